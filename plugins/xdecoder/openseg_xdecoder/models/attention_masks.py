"""X-Decoder's self-attention rules (paper Fig. 4) as a boolean mask tensor.

Query order everywhere in the plugin: ``[object queries (m-1) | global query (1) | text (n)]``.
``True`` means *blocked* (``torch.nn.MultiheadAttention`` convention). Rules:

* object queries attend each other; they are kept apart from the global query in both
  directions (the global query summarises the image for retrieval and sees the image only
  through cross-attention, as in the official implementation);
* ``generic`` / ``retrieval``: latent queries only;
* ``referring``: object queries also attend every (non-padded) text query, which is the
  language condition; text queries attend each other only;
* ``captioning``: a text query attends itself, its predecessors and all latent queries;
  latent queries do not attend text (so their outputs equal the retrieval pass).
* ``grounding`` (the official referring algorithm): order ``[latent (m) | grounding copies of
  the object queries (m-1) | text (n)]``; the copies and the phrase tokens attend each other,
  the latent queries see neither (so they equal the generic pass) and are not seen by them.

Padded text positions are blocked as keys for everyone and attend only themselves, so no
row is fully blocked (which would give NaN).
"""
from typing import Optional

import torch
from torch import Tensor

TASKS = ('generic', 'retrieval', 'referring', 'captioning', 'grounding')


def self_attention_mask(task: str, num_latent: int, num_text: int = 0,
                        text_padding: Optional[Tensor] = None,
                        device: Optional[torch.device] = None) -> Tensor:
    """Build the mask.

    Args:
        task: one of :data:`TASKS`.
        num_latent: ``m``, latent queries including the global one (the last).
        num_text: ``n``, text queries.
        text_padding: ``(B, n)`` bool, True at padded text positions.

    Returns:
        ``(B, Q, Q)`` bool with ``Q = m + n`` (``Q = m + (m - 1) + n`` for ``grounding``;
        ``B = 1`` without ``text_padding``).
    """
    if task not in TASKS:
        raise ValueError(f'unknown X-Decoder task {task!r}; choose one of {TASKS}')
    if task in ('generic', 'retrieval') and num_text:
        raise ValueError(f'task {task!r} takes no text queries, got {num_text}')
    if task in ('referring', 'captioning', 'grounding') and not num_text:
        raise ValueError(f'task {task!r} needs text queries')
    m = num_latent
    glob = m - 1
    if task == 'grounding':
        # The copies count as latent-sized rows before the text: [latent | copies | text].
        m = 2 * num_latent - 1
    total = m + num_text
    mask = torch.ones(total, total, dtype=torch.bool, device=device)
    mask[:glob, :glob] = False
    mask[glob, glob] = False
    if task == 'grounding':
        mask[num_latent:, num_latent:] = False
    elif task == 'referring':
        mask[:glob, m:] = False
        mask[m:, m:] = False
    elif task == 'captioning':
        mask[m:, :m] = False
        mask[m:, m:] = torch.ones(num_text, num_text, dtype=torch.bool,
                                  device=device).triu(diagonal=1)
    mask = mask[None]
    if text_padding is not None and num_text:
        if text_padding.shape[1] != num_text:
            raise ValueError(f'text_padding covers {text_padding.shape[1]} positions, '
                             f'expected {num_text}')
        mask = mask.repeat(text_padding.shape[0], 1, 1)
        pad_cols = torch.cat([text_padding.new_zeros(text_padding.shape[0], m), text_padding],
                             dim=1)
        mask |= pad_cols[:, None, :]
        pad_rows = pad_cols.nonzero(as_tuple=True)
        mask[pad_rows[0], pad_rows[1], :] = True
        mask[pad_rows[0], pad_rows[1], pad_rows[1]] = False
    return mask

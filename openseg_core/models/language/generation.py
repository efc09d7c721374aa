"""Greedy and beam-search decoding over any model that returns next-token logits.

A model plugs in through a *step function*::

    step(input_ids (N, t), cache) -> StepOutput(logits (N, V), cache, hidden (N, D) or None)

``N = B * beam_size`` rows, beam-major within each sequence (row ``b * beam_size + k``), so a
step that reads per-sequence context (image features, encoder outputs) repeats it with
``repeat_interleave(beam_size, 0)``. While the returned cache is ``None`` the search passes
the whole prefix ``(N, t)`` at every step (X-Decoder's ``caption_cache=False``); once a
step returns a cache, later steps get only the newest token ``(N, 1)`` and that cache, with its
rows reordered to follow the beams (:func:`reorder_cache`). ``logits`` may be raw logits or
log-probabilities: the search applies ``log_softmax`` itself.

Greedy decoding is beam search with ``beam_size=1``. A finished hypothesis stays in its beam
at a constant score (only ``end_id`` continues it, at log-probability 0), and the winner
maximises ``sum log p / length ** length_penalty`` where ``length`` counts the generated tokens
including the end token, if any. ``prefix_ids`` may be longer than a start token: PixelLLM
teacher-forces ``[BOS, expression]`` and reads the hidden state of the step that predicts the
end token. Decoding runs without gradients.

How this differs from ``transformers``' ``generate``:

* Greedy (``beam_size=1``) gives the same tokens as ``do_sample=False, num_beams=1``, and
  ``no_repeat_ngram_size`` has Hugging Face's meaning, prompt (``prefix_ids``) included.
* Beam search gives the same sequences and scores (``sequences_scores``) as
  ``num_beams=beam_size, length_penalty=...`` as long as no hypothesis among the top
  ``beam_size`` candidates of a step ends before the last step. Once one ends they can differ:
  Hugging Face moves a finished hypothesis to a separate pool of ``num_beams`` and refills the
  beam with live ones (from ``2 * num_beams`` candidates), so it keeps exploring
  ``num_beams`` live hypotheses; here a finished hypothesis keeps its slot, leaving fewer live
  ones, and the search stops only when every slot has finished (``early_stopping`` has no
  counterpart). This is the search X-Decoder's captions were produced with.
"""
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import torch
from torch import Tensor


@dataclass
class StepOutput:
    """What a step function returns for ``N`` rows over a vocabulary of ``V`` tokens."""
    logits: Tensor  #: ``(N, V)`` next-token logits or log-probabilities
    cache: Any = None  #: the model's KV cache after this step; ``None`` for a model without one
    hidden: Optional[Tensor] = None  #: ``(N, D)`` state of the position that gave ``logits``


#: ``step(input_ids (N, t), cache) -> StepOutput``; see the module docstring.
StepFn = Callable[[Tensor, Any], StepOutput]


@dataclass
class GenerationOutput:
    """The winning hypothesis of each of the ``B`` sequences."""
    sequences: List[List[int]]  #: generated ids, without the prefix, cut before the end token
    scores: Tensor  #: ``(B,)`` ``sum log p / length ** length_penalty`` of each sequence
    #: with ``collect_hidden``: per sequence ``(T_i, D)``, the hidden state of the step that
    #: produced each returned token, plus the step that produced the end token if it was
    hidden_states: Optional[List[Tensor]] = None


def reorder_cache(cache: Any, rows: Tensor) -> Any:
    """Select the batch rows ``rows (N,)`` of a KV cache.

    ``transformers`` ``Cache`` objects (``DynamicCache``, ``EncoderDecoderCache``, ...) are
    reordered in place by their own ``reorder_cache``; otherwise the cache may be a tensor or
    tuples / lists / dicts of them, indexed on dim 0. Other leaves pass through unchanged.
    """
    if isinstance(cache, Tensor):
        return cache.index_select(0, rows.to(cache.device))
    if hasattr(cache, 'reorder_cache'):
        cache.reorder_cache(rows)
        return cache
    if isinstance(cache, dict):
        return {key: reorder_cache(value, rows) for key, value in cache.items()}
    if isinstance(cache, (list, tuple)):
        items = [reorder_cache(item, rows) for item in cache]
        return type(cache)(*items) if hasattr(cache, '_fields') else type(cache)(items)
    return cache


def _ban_repeated_ngrams(logp: Tensor, ids: Tensor, n: int) -> None:
    """Set to ``-inf`` in ``logp (N, V)`` every token that would complete an ``n``-gram already
    in ``ids (N, L)``."""
    if ids.shape[1] < n:
        return
    grams = ids.unfold(1, n, 1)  # (N, L - n + 1, n)
    seen = (grams[..., :-1] == ids[:, ids.shape[1] - n + 1:][:, None]).all(-1)
    row, gram = seen.nonzero(as_tuple=True)
    logp[row, grams[row, gram, -1]] = float('-inf')


@torch.no_grad()
def generate(step: StepFn, prefix_ids: Tensor, end_id: int, max_new_tokens: int,
             beam_size: int = 1, length_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
             collect_hidden: bool = False) -> GenerationOutput:
    """Decode up to ``max_new_tokens`` tokens after ``prefix_ids (B, t0)`` for each sequence.

    Args:
        step: see the module docstring; it sees ``B * beam_size`` rows.
        prefix_ids: what every hypothesis starts from (a start token, or a teacher-forced
            prompt), the same length for the whole batch.
        end_id: the token that finishes a hypothesis.
        beam_size: hypotheses kept per sequence; 1 is greedy decoding.
        length_penalty: exponent of the length that divides a hypothesis' log-probability
            when the winner is chosen; 0 ranks by log-probability alone.
        no_repeat_ngram_size: if > 0, no ``n``-gram of the prefix and generated ids may occur
            twice (1: no token repeats).
        collect_hidden: keep the ``hidden`` of every step (the step must return it).
    """
    if beam_size < 1 or max_new_tokens < 1:
        raise ValueError(f'need beam_size >= 1 and max_new_tokens >= 1, got {beam_size} and '
                         f'{max_new_tokens}')
    batch, k = prefix_ids.shape[0], beam_size
    device = prefix_ids.device
    ids = prefix_ids.repeat_interleave(k, 0)  # (N, t)
    start = ids.shape[1]
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float('-inf')  # all beams start equal: expand from the first only
    done = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, device=device)
    hidden = None  # (N, t - start, D)
    cache = None
    for _ in range(max_new_tokens):
        out = step(ids if cache is None else ids[:, -1:], cache)
        if collect_hidden and out.hidden is None:
            raise ValueError('collect_hidden needs a step that returns StepOutput.hidden')
        logp = out.logits.float().log_softmax(-1)
        if no_repeat_ngram_size > 0:
            _ban_repeated_ngrams(logp, ids, no_repeat_ngram_size)
        logp[done] = float('-inf')
        logp[done, end_id] = 0.0
        if k == 1:
            # Greedy ranks by this step's log-probs alone: adding the running score first
            # could round two of them to a tie.
            token = logp.argmax(-1)
            rows = torch.arange(batch, device=device)
            scores = scores + logp.gather(1, token[:, None])
        else:
            vocab = logp.shape[-1]
            total = (scores.view(-1, 1) + logp).view(batch, k * vocab)
            scores, flat = total.topk(k, dim=1)
            rows = (torch.arange(batch, device=device)[:, None] * k + flat // vocab).view(-1)
            token = (flat % vocab).view(-1)
        lengths = lengths[rows] + (~done[rows]).float()
        ids = torch.cat([ids[rows], token[:, None]], dim=1)
        if collect_hidden:
            new = out.hidden[rows, None]
            hidden = new if hidden is None else torch.cat([hidden[rows], new], dim=1)
        # With one beam per sequence the rows never move.
        cache = out.cache if k == 1 or out.cache is None else reorder_cache(out.cache, rows)
        done = done[rows] | (token == end_id)
        if done.all():
            break
    normalised = scores / lengths.view(batch, k).clamp(min=1) ** length_penalty
    best_scores, best = normalised.max(1)
    best = best + torch.arange(batch, device=device) * k
    sequences, hidden_states = [], []
    for row in best.tolist():
        generated = ids[row, start:].tolist()
        ended = end_id in generated
        sequences.append(generated[:generated.index(end_id)] if ended else generated)
        if collect_hidden:
            hidden_states.append(hidden[row, :len(sequences[-1]) + ended])
    return GenerationOutput(sequences, best_scores,
                            hidden_states if collect_hidden else None)

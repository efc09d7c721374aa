"""APE's prompts: independent strings, words and sentences mixed, routed by kind."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import Tensor

#: How prompts meet the image in the encoder's fusion (see :class:`~.ape.APE`).
ROUTINGS = ('per_prompt', 'fuse_all')


def split_prompts(text: str) -> List[str]:
    """A comma-separated request -> its prompts (stripped, empty ones dropped), as APE's
    demo splits ``"girl,sky,little child with hat on branch"``."""
    return [p.strip() for p in text.split(',') if p.strip()]


def is_sentence(prompt: str) -> bool:
    """APE's rule: a prompt with a space is a sentence (fused with the image), a single word
    a vocabulary prompt."""
    return ' ' in prompt.strip()


@dataclass
class PromptBatch:
    """The ``K`` prompts of one forward pass.

    ``vocabulary`` prompts come first (a fixed vocabulary whose embeddings are cached and
    never fused), then ``sentences`` (fused and updated per image).
    """
    #: ``Kv`` vocabulary prompts (columns ``0 .. Kv - 1``).
    vocabulary: Sequence[str]
    #: ``S`` sentence prompts (columns ``Kv .. Kv + S - 1``).
    sentences: Sequence[str]
    #: ``(B, K)`` bool: which columns each image is scored against (``None``: all). A
    #: sentence an image does not see is also hidden from its fusion.
    visible: Optional[Tensor] = None
    #: ``(N, D)`` extra sentence embeddings appended after the sentences (negatives from the
    #: history bank in training); they are fused like sentences.
    extra_sentence_embeds: Optional[Tensor] = None
    #: ``(S, D)`` the sentences' embeddings when already computed (else encoded).
    sentence_embeds: Optional[Tensor] = None

    @property
    def num_vocabulary(self) -> int:
        return len(self.vocabulary)

    @property
    def num_sentences(self) -> int:
        extra = 0 if self.extra_sentence_embeds is None else len(self.extra_sentence_embeds)
        return len(self.sentences) + extra

    def __len__(self) -> int:
        return self.num_vocabulary + self.num_sentences

    def image_sees(self, batch_size: int, device) -> Tensor:
        """``(B, K)`` visibility, all True when not restricted."""
        if self.visible is None:
            return torch.ones(batch_size, len(self), dtype=torch.bool, device=device)
        return self.visible.to(device)


def mixed_prompts(prompts: Sequence[str]) -> PromptBatch:
    """A request mixing words and sentences -> a :class:`PromptBatch` plus nothing else; the
    caller maps columns back with :func:`request_order`."""
    words = [p for p in prompts if not is_sentence(p)]
    sentences = [p for p in prompts if is_sentence(p)]
    return PromptBatch(vocabulary=words, sentences=sentences)


def request_order(prompts: Sequence[str]) -> Tensor:
    """``(K,)`` the column of each prompt of the request in :func:`mixed_prompts`' order."""
    words = [i for i, p in enumerate(prompts) if not is_sentence(p)]
    sentences = [i for i, p in enumerate(prompts) if is_sentence(p)]
    order = torch.empty(len(prompts), dtype=torch.long)
    order[torch.tensor(words + sentences, dtype=torch.long)] = torch.arange(len(prompts))
    return order

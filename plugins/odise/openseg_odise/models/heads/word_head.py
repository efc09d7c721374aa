"""ODISE's classifier for caption supervision: mask embeddings against projected CLIP
embeddings of words (training) or class names (inference)."""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ...registry import MODELS
from .synonyms import merge_synonyms


@implements(covered_by='odise.CaptionODISE')
@MODELS.register_module()
class WordHead(BaseModule):
    """``logits = s * cos(z, W t + b)`` without a "no object" column (ODISE's ``WordEmbed``):
    the grounding loss compares the batch's masks with the nouns of its captions, and at
    inference the class names take the nouns' place.

    Args:
        embed_dim: width ``D`` of the mask embeddings.
        text_dim: width of the CLIP text embeddings.
        init_temperature: initial ``1 / s``; ``s`` is clamped at ``max_logit_scale``.
    """

    def __init__(self, embed_dim: int = 256, text_dim: int = 768,
                 init_temperature: float = 0.07, max_logit_scale: float = 100.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_logit_scale = max_logit_scale

    @property
    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def embed_texts(self, text_embeds: Tensor) -> Tensor:
        """``(..., D_t)`` CLIP text embeddings -> ``(..., D)`` in the mask embeddings' space."""
        return self.text_proj(text_embeds)

    def forward(self, mask_embeds: Tensor, text_embeds: Tensor,
                counts: Optional[Sequence[int]] = None) -> Tensor:
        """``(B, Q, D)`` and ``(N, D_t)`` -> ``(B, Q, K)`` open-vocabulary logits."""
        texts = F.normalize(self.embed_texts(text_embeds), dim=-1)
        logits = self.scale * F.normalize(mask_embeds, dim=-1) @ texts.t()
        return merge_synonyms(logits, counts or [1] * len(text_embeds))

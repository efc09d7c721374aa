"""ODISE's classifier for category-label supervision."""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ...registry import MODELS
from .synonyms import merge_synonyms


@implements('mask_classification.ClassificationHead', example=dict(embed_dim=16, text_dim=8),
            inputs=dict(channels=16, embed_dim=8))
@MODELS.register_module()
class CategoryHead(BaseModule):
    """``logits = s * cos(z, W t + b)`` for every class name's CLIP text embedding ``t`` (not
    normalised), the names of one class merged by the maximum, and a last "no object" column
    scored the same way against a learned null embedding (ODISE's ``CategoryEmbed``).

    The text side is projected (not the mask side), so the projection, shared by every
    vocabulary, is what training fits; ``s = exp(t)`` is learnable, clamped at 100 (official
    ``PooledMaskEmbed.logit_scale``, initialised at ``1 / 0.07``).

    Args:
        embed_dim: width ``D`` of the mask embeddings.
        text_dim: width of the CLIP text embeddings.
        init_temperature: initial ``1 / s``.
        max_logit_scale: clamp of ``s``.
    """

    classification = 'softmax'
    appends_no_object = True

    def __init__(self, embed_dim: int = 256, text_dim: int = 768,
                 init_temperature: float = 0.07, max_logit_scale: float = 100.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.text_proj = nn.Linear(text_dim, embed_dim)
        # Set from CLIP's embedding of the empty caption by the model (official init).
        self.null_embed = nn.Parameter(torch.randn(1, text_dim) / math.sqrt(text_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_logit_scale = max_logit_scale

    @property
    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def forward(self, mask_embeds: Tensor, text_embeds: Tensor,
                counts: Optional[Sequence[int]] = None) -> Tensor:
        """``(B, Q, D)`` mask embeddings and ``(N, D_t)`` text embeddings of the names
        (``counts`` names per class, default one) -> ``(B, Q, K + 1)`` logits."""
        masks = F.normalize(mask_embeds, dim=-1)
        texts = F.normalize(self.text_proj(torch.cat([text_embeds, self.null_embed])), dim=-1)
        logits = self.scale * masks @ texts.t()
        classes = merge_synonyms(logits[..., :-1], counts or [1] * len(text_embeds))
        return torch.cat([classes, logits[..., -1:]], dim=-1)

"""Open-vocabulary classification of queries by similarity to text embeddings."""
import math

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.registry import MODELS


@MODELS.register_module()
class TextClassifierHead(BaseModule):
    """``logits = exp(t) * <proj(q) / |proj(q)|, e / |e|>`` over the vocabulary + "no object".

    The "no object" class is a learned embedding appended to the class embeddings, so the
    vocabulary can change between training and testing.

    Args:
        in_channels: query width ``C``.
        embed_dim: text embedding width ``D``.
        init_temperature: initial ``1/exp(t)``; CLIP's 0.07.
        max_logit_scale: clamp of ``exp(t)``, as in CLIP.
    """

    def __init__(self, in_channels: int, embed_dim: int, init_temperature: float = 0.07,
                 max_logit_scale: float = 100.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.Linear(in_channels, embed_dim)
        self.no_object_embed = nn.Parameter(torch.randn(embed_dim) / math.sqrt(embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log_scale = math.log(max_logit_scale)

    def forward(self, query_embeds: Tensor, class_embeds: Tensor) -> Tensor:
        """``(B, Q, C)`` queries and ``(K, D)`` class embeddings -> ``(B, Q, K + 1)`` logits."""
        classes = torch.cat([class_embeds, self.no_object_embed[None]], dim=0)
        queries = F.normalize(self.proj(query_embeds), dim=-1)
        scale = self.logit_scale.clamp(max=self.max_log_scale).exp()
        return scale * queries @ F.normalize(classes, dim=-1).t()

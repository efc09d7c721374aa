"""Open-vocabulary classification of queries by similarity to text embeddings."""
import math

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.registry import MODELS

from ..interfaces import implements

#: The two classification rules of the mask-classification family.
CLASSIFICATIONS = ('softmax', 'sigmoid')


@implements('mask_classification.ClassificationHead',
            example=dict(in_channels=16, embed_dim=8), inputs=dict(channels=16, embed_dim=8))
@implements('mask_classification.ClassificationHead',
            example=dict(in_channels=16, embed_dim=8, classification='sigmoid'),
            inputs=dict(channels=16, embed_dim=8))
@MODELS.register_module()
class TextClassifierHead(BaseModule):
    """``logits = exp(t) * <proj(q) / |proj(q)|, e / |e|>`` over the vocabulary.

    ``classification='softmax'`` (Mask2Former) appends a learned "no object" embedding as the
    last class, scored like the others, so the vocabulary can change between training and
    testing; ``'sigmoid'`` scores each class independently (focal-loss training, DETR-style)
    and adds a learned bias, as GLIP's region-word alignment does.

    Args:
        in_channels: query width ``C``.
        embed_dim: text embedding width ``D``.
        init_temperature: initial ``1/exp(t)``; CLIP's 0.07.
        max_logit_scale: clamp of ``exp(t)``, as in CLIP.
        classification: ``'softmax'`` or ``'sigmoid'``.
        init_bias_prob: ``'sigmoid'`` only: the initial probability of every class (the
            focal-loss prior, 0.01).
    """

    def __init__(self, in_channels: int, embed_dim: int, init_temperature: float = 0.07,
                 max_logit_scale: float = 100.0, classification: str = 'softmax',
                 init_bias_prob: float = 0.01, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if classification not in CLASSIFICATIONS:
            raise ValueError(f'classification must be one of {CLASSIFICATIONS}, '
                             f'not {classification!r}')
        self.classification = classification
        self.appends_no_object = classification == 'softmax'
        self.proj = nn.Linear(in_channels, embed_dim)
        if self.appends_no_object:
            self.no_object_embed = nn.Parameter(torch.randn(embed_dim) / math.sqrt(embed_dim))
        else:
            self.bias = nn.Parameter(torch.tensor(-math.log((1 - init_bias_prob)
                                                            / init_bias_prob)))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log_scale = math.log(max_logit_scale)

    def forward(self, query_embeds: Tensor, class_embeds: Tensor) -> Tensor:
        """``(B, Q, C)`` queries and ``(K, D)`` class embeddings -> ``(B, Q, K + 1)`` logits
        (last = no object) for ``'softmax'``, ``(B, Q, K)`` for ``'sigmoid'``."""
        classes = class_embeds
        if self.appends_no_object:
            classes = torch.cat([class_embeds, self.no_object_embed[None]], dim=0)
        queries = F.normalize(self.proj(query_embeds), dim=-1)
        scale = self.logit_scale.clamp(max=self.max_log_scale).exp()
        logits = scale * queries @ F.normalize(classes, dim=-1).t()
        return logits if self.appends_no_object else logits + self.bias

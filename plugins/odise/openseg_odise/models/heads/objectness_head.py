"""The caption model's class-agnostic classifier: object or no object per query."""
from typing import Optional

from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ...registry import MODELS


@implements('mask_classification.ClassificationHead', example=dict(in_channels=16),
            inputs=dict(channels=16, embed_dim=8))
@MODELS.register_module()
class ObjectnessHead(BaseModule):
    """``Linear(C, 2)`` on the decoder's queries: an "object" logit repeated for every class
    and a "no object" logit (ODISE's caption model trains its masks with one class, all
    labels 0; the word head tells classes apart).

    Args:
        in_channels: query width ``C``.
    """

    classification = 'softmax'
    appends_no_object = True

    def __init__(self, in_channels: int = 256, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.class_embed = nn.Linear(in_channels, 2)

    def forward(self, query_embeds: Tensor, class_embeds: Optional[Tensor] = None) -> Tensor:
        """``(B, Q, C)`` -> ``(B, Q, K + 1)`` for ``K`` class embeddings (``(B, Q, 2)`` with
        none)."""
        logits = self.class_embed(query_embeds)
        classes = 1 if class_embeds is None else len(class_embeds)
        return logits[..., [0] * classes + [1]]

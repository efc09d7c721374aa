"""CLIP's symmetric image-text contrastive loss."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.registry import MODELS

from ..interfaces import contract, expect, expect_finite, expect_shape, implements


@implements('losses.ImageTextContrastive', example=dict())
@MODELS.register_module()
class ImageTextContrastiveLoss(BaseModule):
    """Mean of the image->text and text->image cross-entropies over a similarity matrix
    whose diagonal holds the matching pairs (CLIP; X-Decoder's ``L_it``, Eq. 8).

    Args:
        loss_weight: multiplier of the loss.
    """

    def __init__(self, loss_weight: float = 1.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor) -> Tensor:
        """``(B, B)`` scaled similarities, image ``i`` x text ``j`` -> scalar."""
        target = torch.arange(len(logits), device=logits.device)
        return self.loss_weight * (F.cross_entropy(logits, target)
                                   + F.cross_entropy(logits.t(), target)) / 2


@contract('losses.ImageTextContrastive')
def check_image_text_contrastive(part) -> None:
    """``(B, B)`` logits -> a finite scalar, lower when the diagonal dominates."""
    logits = torch.randn(4, 4, requires_grad=True)
    loss = part(logits)
    expect_shape(loss, (), 'loss')
    expect_finite(loss, 'loss')
    expect(float(part(torch.eye(4) * 20)) < float(loss.detach()),
           'matching pairs on the diagonal must lower the loss')

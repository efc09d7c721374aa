"""Next-token cross-entropy over the real tokens of a batch of sequences."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.registry import MODELS

from ..interfaces import contract, expect, expect_finite, expect_shape, implements


@implements('losses.TokenCrossEntropy', example=dict())
@implements('losses.TokenCrossEntropy', example=dict(label_smoothing=0.1))
@implements('losses.TokenCrossEntropy', example=dict(label_smoothing=0.1,
                                                     smoothing_excludes_target=True))
@MODELS.register_module()
class TokenCrossEntropyLoss(BaseModule):
    """Cross-entropy of next-token logits, averaged over the tokens a mask keeps (captioning).

    Padding is a mask, not a token id: a tokenizer's padding id may be a real token (CLIP's 0
    is "!").

    Args:
        label_smoothing: torch's label smoothing (``1 - e + e / V`` on the target).
        smoothing_excludes_target: spread ``e`` over the other ``V - 1`` tokens instead, so
            the target gets exactly ``1 - e`` (GRiT's and PixelLLM's smoothing).
        loss_weight: multiplier of the loss.
    """

    def __init__(self, label_smoothing: float = 0.0, smoothing_excludes_target: bool = False,
                 loss_weight: float = 1.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.label_smoothing = label_smoothing
        self.smoothing_excludes_target = smoothing_excludes_target
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
        """``(B, T, V)`` logits, ``(B, T)`` target ids, ``(B, T)`` bool mask (True = counts;
        default all) -> scalar."""
        smoothing = self.label_smoothing
        if self.smoothing_excludes_target and smoothing:
            # torch gives the target 1 - e' + e' / V: e' = e V / (V - 1) leaves it 1 - e and
            # e / (V - 1) to every other token.
            vocab = logits.shape[-1]
            smoothing = smoothing * vocab / (vocab - 1)
        losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                 reduction='none', label_smoothing=smoothing)
        if mask is None:
            return self.loss_weight * losses.mean()
        mask = mask.flatten().to(losses.dtype)
        return self.loss_weight * (losses * mask).sum() / mask.sum().clamp(min=1)


@contract('losses.TokenCrossEntropy')
def check_token_cross_entropy(part) -> None:
    """Masked tokens do not count, whatever their logits."""
    logits = torch.randn(2, 3, 7, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss = part(logits, targets, mask)
    expect_shape(loss, (), 'loss')
    expect_finite(loss, 'loss')
    changed = logits.detach().clone()
    changed[0, 2] += 100 * torch.randn(7)
    expect(torch.allclose(part(changed, targets, mask), loss.detach()),
           'a masked position changed the loss')

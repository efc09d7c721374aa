"""Losses of the generic layer (mmdet's CrossEntropy / Focal / Dice / L1 / GIoU losses are
used by name)."""
from .image_text_contrastive_loss import ImageTextContrastiveLoss
from .token_cross_entropy_loss import TokenCrossEntropyLoss

__all__ = ['ImageTextContrastiveLoss', 'TokenCrossEntropyLoss']

from .mask_classification_loss import MaskClassificationLoss

__all__ = ['MaskClassificationLoss']

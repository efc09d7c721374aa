from .mask_grounding_loss import SOFTMAX_OVER, MaskGroundingLoss

__all__ = ['MaskGroundingLoss', 'SOFTMAX_OVER']

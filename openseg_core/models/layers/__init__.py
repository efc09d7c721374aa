from .mask_postprocessor import MaskPostProcessor

__all__ = ['MaskPostProcessor']

from .mask_clip import MaskCLIP
from .open_clip_image_backbone import OpenCLIPImageBackbone

__all__ = ['MaskCLIP', 'OpenCLIPImageBackbone']

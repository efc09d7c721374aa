from .open_clip_image_backbone import OpenCLIPImageBackbone

__all__ = ['OpenCLIPImageBackbone']

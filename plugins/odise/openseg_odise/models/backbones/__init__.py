from .diffusion_backbone import DiffusionBackbone, projection

__all__ = ['DiffusionBackbone', 'projection']

"""Frozen Stable Diffusion as a feature extractor, and the implicit captioner."""
from .feature_extractor import StableDiffusionFeatureExtractor
from .implicit_captioner import ImplicitCaptioner, PositionalLinear

__all__ = ['StableDiffusionFeatureExtractor', 'ImplicitCaptioner', 'PositionalLinear']

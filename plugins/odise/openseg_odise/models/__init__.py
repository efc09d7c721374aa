"""ODISE's model parts."""
from .backbones import DiffusionBackbone
from .diffusion import ImplicitCaptioner, StableDiffusionFeatureExtractor
from .heads import (CategoryHead, ObjectnessHead, PooledMaskEmbed, SynonymRegionEnsemble,
                    WordHead)
from .losses import MaskGroundingLoss
from .segmentors import ODISE, CaptionODISE, CategoryODISE

__all__ = ['DiffusionBackbone', 'ImplicitCaptioner', 'StableDiffusionFeatureExtractor',
           'CategoryHead', 'ObjectnessHead', 'PooledMaskEmbed', 'SynonymRegionEnsemble',
           'WordHead', 'MaskGroundingLoss', 'ODISE', 'CategoryODISE', 'CaptionODISE']

"""APE's data: thing-stuff equalization and image-centric grounding samples."""
from .grounding import GroundingDataset
from .transforms import SampleGroundingPhrases, StuffToInstances, split_stuff_region

__all__ = ['GroundingDataset', 'SampleGroundingPhrases', 'StuffToInstances',
           'split_stuff_region']

from .narratives import NarrativesDataset
from .object_captions import ObjectCaptionsDataset
from .transforms import LoadNarrativeTargets, PackPixelLLMInputs

__all__ = ['NarrativesDataset', 'ObjectCaptionsDataset', 'LoadNarrativeTargets',
           'PackPixelLLMInputs']

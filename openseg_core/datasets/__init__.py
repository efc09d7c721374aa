from .captions import CocoCaptionsDataset, LocalizedNarrativesDataset
from .crops import CropToBox, ObjectCropsDataset, square_crop_box
from .errors import DatasetError
from .open_vocab_panoptic import OpenVocabPanopticDataset
from .referring import ReferringDataset, load_referring_split, load_refs
from .transforms import PackOpenSegInputs, SetTask

__all__ = ['OpenVocabPanopticDataset', 'ReferringDataset', 'CocoCaptionsDataset',
           'LocalizedNarrativesDataset', 'ObjectCropsDataset', 'CropToBox', 'square_crop_box',
           'DatasetError', 'load_refs', 'load_referring_split', 'SetTask',
           'PackOpenSegInputs']

from .captions import CocoCaptionsDataset, LocalizedNarrativesDataset
from .errors import DatasetError
from .open_vocab_panoptic import OpenVocabPanopticDataset
from .referring import ReferringDataset, load_refs
from .transforms import PackOpenSegInputs, SetTask

__all__ = ['OpenVocabPanopticDataset', 'ReferringDataset', 'CocoCaptionsDataset',
           'LocalizedNarrativesDataset', 'DatasetError', 'load_refs', 'SetTask',
           'PackOpenSegInputs']

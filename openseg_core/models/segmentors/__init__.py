from .open_vocab_mask_segmentor import OpenVocabMaskSegmentor
from .open_vocabulary import OpenVocabularyMixin

__all__ = ['OpenVocabMaskSegmentor', 'OpenVocabularyMixin']

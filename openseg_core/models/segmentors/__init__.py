from .open_vocab_mask_segmentor import OpenVocabMaskSegmentor

__all__ = ['OpenVocabMaskSegmentor']

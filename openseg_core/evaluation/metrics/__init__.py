from .caption_metric import CaptionMetric, tokenize_caption
from .open_vocab_panoptic_metric import OpenVocabCocoMetric, OpenVocabPanopticMetric
from .referring_metric import ReferringSegMetric, mask_iou_stats
from .retrieval_metric import RetrievalMetric, retrieval_ranks

__all__ = ['CaptionMetric', 'OpenVocabCocoMetric', 'OpenVocabPanopticMetric', 'ReferringSegMetric',
           'RetrievalMetric', 'mask_iou_stats', 'retrieval_ranks', 'tokenize_caption']

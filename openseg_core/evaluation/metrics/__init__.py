from .caption_metric import CaptionMetric, tokenize_caption
from .open_vocab_panoptic_metric import OpenVocabCocoMetric, OpenVocabPanopticMetric
from .referring_metric import ReferringSegMetric, mask_iou_stats
from .retrieval_metric import RetrievalMetric, retrieval_ranks
from .zero_shot_metric import ZeroShotCropMetric

__all__ = ['CaptionMetric', 'OpenVocabCocoMetric', 'OpenVocabPanopticMetric', 'ReferringSegMetric',
           'RetrievalMetric', 'ZeroShotCropMetric', 'mask_iou_stats', 'retrieval_ranks',
           'tokenize_caption']

from .caption_keyword_metric import CaptionKeywordMetric
from .caption_metric import CaptionMetric, tokenize_caption
from .dense_caption_metric import DenseCaptionMetric, exact_meteor, merge_overlapping_boxes
from .open_vocab_panoptic_metric import OpenVocabCocoMetric, OpenVocabPanopticMetric
from .referring_localization_metric import ReferringLocalizationMetric, box_iou
from .referring_metric import ReferringSegMetric, mask_iou_stats
from .retrieval_metric import RetrievalMetric, retrieval_ranks
from .trace_metric import TraceQualityMetric
from .zero_shot_metric import ZeroShotCropMetric

__all__ = ['CaptionKeywordMetric', 'CaptionMetric', 'DenseCaptionMetric', 'OpenVocabCocoMetric',
           'OpenVocabPanopticMetric', 'ReferringLocalizationMetric', 'ReferringSegMetric',
           'RetrievalMetric', 'TraceQualityMetric', 'ZeroShotCropMetric', 'box_iou',
           'exact_meteor', 'mask_iou_stats', 'merge_overlapping_boxes', 'retrieval_ranks',
           'tokenize_caption']

from .open_vocab_panoptic_metric import OpenVocabPanopticMetric
from .referring_metric import ReferringSegMetric, mask_iou_stats

__all__ = ['OpenVocabPanopticMetric', 'ReferringSegMetric', 'mask_iou_stats']

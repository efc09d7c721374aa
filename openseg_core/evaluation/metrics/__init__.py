from .referring_metric import ReferringSegMetric, mask_iou_stats

__all__ = ['ReferringSegMetric', 'mask_iou_stats']

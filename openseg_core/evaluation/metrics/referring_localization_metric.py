"""Referring-localization metric: box accuracy at IoU thresholds (RefCOCO's Acc@0.5)."""
from collections import OrderedDict
from typing import Sequence

import torch
from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``(N, 4)`` and ``(M, 4)`` ``x1, y1, x2, y2`` boxes -> ``(N, M)``; a pair whose
    union is empty has IoU 0."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def _boxes(value) -> torch.Tensor:
    """mmdet's ``HorizontalBoxes``, a tensor or a nested list -> float ``(N, 4)``."""
    value = getattr(value, 'tensor', value)
    return torch.as_tensor(value, dtype=torch.float64).reshape(-1, 4).cpu()


@METRICS.register_module()
class ReferringLocalizationMetric(BaseMetric):
    """Share of expressions whose predicted box overlaps the referred object's box with IoU
    at least ``t`` (``Acc@0.5``, the RefCOCO localization accuracy; MDETR, PixelLLM), and the
    mean IoU.

    Each data sample needs ``pred_instances.bboxes`` (the first row is the answer; none
    counts as IoU 0) and ``gt_bboxes`` (the referred box first; keep it in the test
    pipeline's ``meta_keys`` and load it after any ``Resize``, so that both are in original
    image pixels), all ``x1, y1, x2, y2``.
    """

    default_prefix = 'refer_loc'

    def __init__(self, thresholds: Sequence[float] = (0.5,), **kwargs):
        super().__init__(**kwargs)
        self.thresholds = tuple(thresholds)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'gt_bboxes' not in sample:
                raise ValueError('ReferringLocalizationMetric: a sample has no gt_bboxes; add '
                                 "'gt_bboxes' to PackOpenSegInputs' meta_keys in the test "
                                 'pipeline')
            gt = _boxes(sample['gt_bboxes'])[:1]
            pred = _boxes(sample['pred_instances']['bboxes'])[:1]
            iou = float(box_iou(pred, gt)[0, 0]) if len(pred) and len(gt) else 0.0
            self.results.append(iou)

    def compute_metrics(self, results: list) -> dict:
        if not results:
            raise ValueError('ReferringLocalizationMetric: no samples were evaluated')
        ious = torch.tensor(results, dtype=torch.float64)
        metrics = OrderedDict()
        for t in self.thresholds:
            metrics[f'Acc@{t}'] = 100 * (ious >= t).double().mean().item()
        metrics['mIoU'] = 100 * ious.mean().item()
        return metrics

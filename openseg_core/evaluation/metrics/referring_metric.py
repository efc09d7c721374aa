"""Referring-segmentation metrics: cIoU, mIoU and precision at IoU thresholds."""
from collections import OrderedDict
from typing import Sequence

import torch
from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS


def mask_iou_stats(pred: torch.Tensor, gt: torch.Tensor):
    """``(H, W)`` bool masks -> (intersection, union) pixel counts."""
    return (pred & gt).sum().item(), (pred | gt).sum().item()


@METRICS.register_module()
class ReferringSegMetric(BaseMetric):
    """cIoU = sum(I) / sum(U) over the set; mIoU = mean per-expression IoU; Pr@t = share of
    expressions with IoU > t. mmdet's ``RefSegMetric`` lacks Pr@t, the RefCOCO-standard
    companion of cIoU.

    Each data sample needs ``pred_instances.masks`` ``(1, H, W)`` (the first, best mask is
    used; none counts as empty) and ``gt_masks`` (one mask).
    """

    default_prefix = 'refer'

    def __init__(self, thresholds: Sequence[float] = (0.5, 0.7, 0.9), **kwargs):
        super().__init__(**kwargs)
        self.thresholds = tuple(thresholds)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt = sample['gt_masks']
            gt = gt.to_tensor(torch.bool, 'cpu')[0] if hasattr(gt, 'to_tensor') else gt[0].bool()
            masks = sample['pred_instances']['masks']
            pred = masks[0].bool().cpu() if len(masks) else torch.zeros_like(gt)
            self.results.append(mask_iou_stats(pred, gt))

    def compute_metrics(self, results: list) -> dict:
        inter = torch.tensor([r[0] for r in results], dtype=torch.float64)
        union = torch.tensor([r[1] for r in results], dtype=torch.float64)
        ious = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        metrics = OrderedDict(cIoU=100 * (inter.sum() / union.sum().clamp(min=1)).item(),
                              mIoU=100 * ious.mean().item())
        for t in self.thresholds:
            metrics[f'Pr@{t}'] = 100 * (ious > t).double().mean().item()
        return metrics

"""DETA's one-to-many assignment of predictions to targets by box IoU."""
from typing import Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.registry import TASK_UTILS

from ..interfaces import implements


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """``(N, M)`` IoU of xyxy boxes as DETA computes it (detrex's ``box_iou``): ``inter /
    (union + eps)``. mmdet's ``bbox_overlaps`` divides by ``max(union, eps)`` instead; on
    APE's normalised boxes the two differ by about 1e-3 for small boxes, enough to move
    predictions across the IoU thresholds (docs/plugins/ape.md, Fidelity)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None] - inter + eps)


@implements('detection.Assigner', example=dict(pos_iou_thr=0.6, pos_fraction=1.0, max_k=2))
@TASK_UTILS.register_module()
class OneToManyAssigner:
    """DETA's IoU assignment (Ouyang-Zhang et al. 2022), as APE trains with it.

    Each prediction is matched to the target of its best IoU, as detectron2's ``Matcher``
    does, and is positive from ``pos_iou_thr`` on; every prediction whose IoU with a target
    equals that target's best IoU is positive too (low-quality matches). (DETA's lower
    threshold only separates ignored from negative predictions, which it never uses: all
    unassigned predictions are negatives of the classification loss.) At most ``num_samples
    * pos_fraction`` positives are kept at random; then each target that kept ``c`` positives
    is assigned its ``min(c, max_k)`` predictions of highest IoU. A target thus trains up to
    ``max_k`` queries.

    Written here because mmdet's ``MaxIoUAssigner`` reassigns low-quality matches to the
    target that found them (detectron2 keeps each prediction's best target) and has no top-k
    per target step; both change which queries train.

    APE's settings: encoder proposals IoU 0.7, 256 samples, half positive, top 4; decoder
    queries IoU 0.6, as many samples as queries, a quarter positive, top 4, against the
    decoder's initial reference boxes.

    Args:
        pos_iou_thr: IoU from which a prediction is positive.
        num_samples: positives are capped at ``num_samples * pos_fraction``; ``None``: the
            number of predictions.
        pos_fraction: see ``num_samples``.
        max_k: most predictions per target.
        match_low_quality: also make positive each target's best predictions.
    """

    def __init__(self, pos_iou_thr: float, num_samples: Optional[int] = None,
                 pos_fraction: float = 0.25, max_k: int = 4, match_low_quality: bool = True):
        if not 0 < pos_iou_thr <= 1:
            raise ValueError(f'pos_iou_thr must be in (0, 1], got {pos_iou_thr}')
        if max_k < 1:
            raise ValueError(f'max_k must be at least 1, got {max_k}')
        self.pos_iou_thr = pos_iou_thr
        self.num_samples, self.pos_fraction = num_samples, pos_fraction
        self.max_k = max_k
        self.match_low_quality = match_low_quality

    @torch.no_grad()
    def match(self, pred_instances: InstanceData, gt_instances: InstanceData,
              img_meta: Optional[dict] = None) -> Tuple[Tensor, Tensor]:
        """Assign one image.

        Args:
            pred_instances: ``bboxes (Q, 4)`` xyxy, normalised to the image as DETA's (the
                IoU's ``1e-6`` is DETA's on that scale).
            gt_instances: ``bboxes (G, 4)`` xyxy.
            img_meta: unused (the interface of the core's matchers).

        Returns:
            ``(M,)`` query indices and ``(M,)`` target indices; a target appears up to
            ``max_k`` times.
        """
        boxes, gt_boxes = pred_instances.bboxes, gt_instances.bboxes
        empty = boxes.new_zeros((0,), dtype=torch.long)
        if len(gt_boxes) == 0 or len(boxes) == 0:
            return empty, empty
        iou = box_iou(gt_boxes.float(), boxes.float())  # (G, Q)
        best_iou, best_gt = iou.max(dim=0)
        positive = best_iou >= self.pos_iou_thr
        if self.match_low_quality:
            positive |= (iou == iou.max(dim=1, keepdim=True)[0]).any(dim=0)
        candidates = positive.nonzero()[:, 0]
        num_samples = len(boxes) if self.num_samples is None else self.num_samples
        keep = min(len(candidates), int(num_samples * self.pos_fraction))
        candidates = candidates[torch.randperm(len(candidates), device=boxes.device)[:keep]]
        targets, counts = best_gt[candidates].unique(return_counts=True)
        if len(targets) == 0:
            return empty, empty
        top = iou[targets].topk(min(self.max_k, len(boxes)), dim=1)[1]  # (T, k)
        taken = torch.arange(top.shape[1], device=boxes.device)[None] < counts[:, None]
        return top[taken], targets[:, None].expand_as(top)[taken]

"""One-to-one matching of predictions to targets with any of mmdet's match costs."""
from typing import List, Optional, Tuple

import torch
from mmcv.ops import point_sample
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.registry import TASK_UTILS

from ..interfaces import implements


@implements('Matcher', example=dict(num_points=64, match_costs=[
    dict(type='ClassificationCost', weight=2.0),
    dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
    dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)]))
@TASK_UTILS.register_module()
class HungarianMatcher:
    """mmdet's ``HungarianAssigner`` over ``InstanceData``, with masks compared on points.

    The costs are mmdet's match costs, so the classification rule and the geometry are config
    lines: Mask2Former's softmax ``ClassificationCost`` + ``CrossEntropyLossCost`` +
    ``DiceCost``; a sigmoid classifier's ``FocalLossCost``; boxes with ``BBoxL1Cost`` and
    ``IoUCost`` (which read ``bboxes``, xyxy in pixels on both sides; ``BBoxL1Cost``
    normalises them by ``img_meta['img_shape']``). Masks are compared on the
    same ``num_points`` uniformly sampled points for every pair (Mask2Former: 112 x 112);
    mmdet's mask costs then see ``(N, num_points)`` tensors.

    Args:
        match_costs: mmdet match-cost configs (``TASK_UTILS``).
        num_points: points sampled per image for mask costs.
    """

    def __init__(self, match_costs: List[dict], num_points: int = 12544):
        self.num_points = num_points
        self.assigner = TASK_UTILS.build(dict(type='HungarianAssigner',
                                              match_costs=match_costs))

    @torch.no_grad()
    def match(self, pred_instances: InstanceData, gt_instances: InstanceData,
              img_meta: Optional[dict] = None) -> Tuple[Tensor, Tensor]:
        """Match one image.

        Args:
            pred_instances: ``scores (Q, K')`` class logits and any of ``masks (Q, h, w)``
                logits and ``bboxes (Q, 4)``.
            gt_instances: ``labels (G,)`` and the same geometry: ``masks (G, H, W)`` binary
                (any resolution: points are normalised), ``bboxes (G, 4)``.
            img_meta: ``img_shape`` for box costs.

        Returns:
            ``(M,)`` query indices and ``(M,)`` target indices, each query and each target at
            most once.
        """
        if len(gt_instances) == 0:
            empty = gt_instances.labels.new_zeros((0,), dtype=torch.long)
            return empty, empty
        preds, targets = InstanceData(scores=pred_instances.scores.float()), InstanceData(
            labels=gt_instances.labels)
        if 'masks' in pred_instances:
            masks = pred_instances.masks
            points = torch.rand((1, self.num_points, 2), device=masks.device)
            preds.masks = point_sample(masks[:, None].float(),
                                       points.expand(masks.shape[0], -1, -1))[:, 0]
            gt_masks = gt_instances.masks
            targets.masks = point_sample(gt_masks[:, None].float(),
                                         points.expand(gt_masks.shape[0], -1, -1))[:, 0]
        if 'bboxes' in pred_instances:
            preds.bboxes, targets.bboxes = pred_instances.bboxes, gt_instances.bboxes
        result = self.assigner.assign(pred_instances=preds, gt_instances=targets,
                                      img_meta=img_meta)
        query_idx = torch.nonzero(result.gt_inds > 0, as_tuple=True)[0]
        return query_idx, result.gt_inds[query_idx] - 1

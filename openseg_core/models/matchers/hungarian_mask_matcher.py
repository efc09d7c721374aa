"""Hungarian matching of mask queries to targets on point samples."""
from typing import Tuple

import torch
from mmcv.ops import point_sample
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.registry import TASK_UTILS


@TASK_UTILS.register_module()
class HungarianMaskMatcher:
    """mmdet's ``HungarianAssigner`` with Mask2Former's costs, on ``num_points`` random points.

    The cost of pairing query ``q`` and target ``g`` is
    ``class_weight * -p_q(label_g) + mask_weight * BCE(q, g) + dice_weight * dice(q, g)``,
    the mask terms evaluated on the same uniformly sampled points for all pairs.

    Args:
        num_points: points sampled per image (Mask2Former: 112 * 112 = 12544).
        class_weight, mask_weight, dice_weight: cost weights (Mask2Former: 2, 5, 5).
    """

    def __init__(self, num_points: int = 12544, class_weight: float = 2.0,
                 mask_weight: float = 5.0, dice_weight: float = 5.0):
        self.num_points = num_points
        self.assigner = TASK_UTILS.build(dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=class_weight),
                dict(type='CrossEntropyLossCost', weight=mask_weight, use_sigmoid=True),
                dict(type='DiceCost', weight=dice_weight, pred_act=True, eps=1.0),
            ]))

    @torch.no_grad()
    def match(self, cls_logits: Tensor, mask_logits: Tensor, gt_labels: Tensor,
              gt_masks: Tensor) -> Tuple[Tensor, Tensor]:
        """Match one image.

        Args:
            cls_logits: ``(Q, K + 1)`` class logits.
            mask_logits: ``(Q, h, w)`` mask logits.
            gt_labels: ``(G,)`` target classes in ``[0, K)``.
            gt_masks: ``(G, H, W)`` binary target masks (any resolution: points are normalised).

        Returns:
            ``(M,)`` query indices and ``(M,)`` target indices, ``M = min(Q, G)``.
        """
        if gt_labels.numel() == 0:
            empty = gt_labels.new_zeros((0,), dtype=torch.long)
            return empty, empty
        points = torch.rand((1, self.num_points, 2), device=mask_logits.device)
        pred_points = point_sample(mask_logits[:, None].float(),
                                   points.expand(mask_logits.shape[0], -1, -1))[:, 0]
        gt_points = point_sample(gt_masks[:, None].float(),
                                 points.expand(gt_masks.shape[0], -1, -1))[:, 0]
        result = self.assigner.assign(
            pred_instances=InstanceData(scores=cls_logits.float(), masks=pred_points),
            gt_instances=InstanceData(labels=gt_labels, masks=gt_points))
        query_idx = torch.nonzero(result.gt_inds > 0, as_tuple=True)[0]
        return query_idx, result.gt_inds[query_idx] - 1

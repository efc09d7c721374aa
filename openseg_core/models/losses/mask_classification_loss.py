"""Mask2Former's set loss: class CE + point-sampled mask BCE and dice, per decoder layer."""
from typing import Dict, List

import torch
import torch.nn.functional as F
from mmcv.ops import point_sample
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.registry import MODELS, TASK_UTILS


@MODELS.register_module()
class MaskClassificationLoss(BaseModule):
    """Matches every decoder layer's predictions to the targets and sums the weighted losses.

    Class CE runs over all queries (unmatched ones target "no object", down-weighted by
    ``no_object_weight``); the mask losses run on matched queries only, on ``num_points``
    points chosen by uncertainty (``oversample_ratio``, ``importance_sample_ratio``), with
    mmdet's ``CrossEntropyLoss`` and ``DiceLoss``.

    Returns (mmdet naming): ``loss_cls``, ``loss_mask``, ``loss_dice`` for the last layer and
    ``d{i}.loss_*`` for the earlier ones (deep supervision).
    """

    def __init__(self, matcher: dict, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, no_object_weight: float = 0.1,
                 num_points: int = 12544, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.matcher = TASK_UTILS.build(matcher)
        self.class_weight = class_weight
        self.no_object_weight = no_object_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.loss_mask = MODELS.build(dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True,
                                           reduction='mean', loss_weight=mask_weight))
        self.loss_dice = MODELS.build(dict(type='mmdet.DiceLoss', use_sigmoid=True,
                                           activate=True, reduction='mean', naive_dice=True,
                                           eps=1.0, loss_weight=dice_weight))

    def forward(self, cls_logits: List[Tensor], mask_logits: List[Tensor],
                gt_labels: List[Tensor], gt_masks: List[Tensor]) -> Dict[str, Tensor]:
        """Args:
            cls_logits: per layer, ``(B, Q, K + 1)``.
            mask_logits: per layer, ``(B, Q, h, w)``.
            gt_labels: per image, ``(G_i,)`` in ``[0, K)``.
            gt_masks: per image, ``(G_i, H, W)`` binary.
        """
        losses = {}
        last = len(cls_logits) - 1
        for layer, (cls_l, mask_l) in enumerate(zip(cls_logits, mask_logits)):
            prefix = '' if layer == last else f'd{layer}.'
            for name, value in self.layer_loss(cls_l, mask_l, gt_labels, gt_masks).items():
                losses[prefix + name] = value
        return losses

    def layer_loss(self, cls_logits: Tensor, mask_logits: Tensor, gt_labels: List[Tensor],
                   gt_masks: List[Tensor]) -> Dict[str, Tensor]:
        batch, num_queries, num_cls = cls_logits.shape
        no_object = num_cls - 1
        matches = self.match(cls_logits, mask_logits, gt_labels, gt_masks)
        cls_targets = cls_logits.new_full((batch, num_queries), no_object, dtype=torch.long)
        for i, (q_idx, g_idx) in enumerate(matches):
            cls_targets[i, q_idx] = gt_labels[i][g_idx]
        weights = cls_logits.new_ones(num_cls)
        weights[no_object] = self.no_object_weight
        loss_cls = self.class_weight * F.cross_entropy(
            cls_logits.flatten(0, 1), cls_targets.flatten(), weight=weights)
        return dict(loss_cls=loss_cls, **self.mask_losses(mask_logits, matches, gt_masks))

    def match(self, cls_logits: Tensor, mask_logits: Tensor, gt_labels: List[Tensor],
              gt_masks: List[Tensor]) -> List[tuple]:
        """Per image, the matched ``(query indices, target indices)``."""
        return [self.matcher.match(cls_logits[i], mask_logits[i], gt_labels[i], gt_masks[i])
                for i in range(cls_logits.shape[0])]

    def mask_losses(self, mask_logits: Tensor, matches: List[tuple],
                    gt_masks: List[Tensor]) -> Dict[str, Tensor]:
        """BCE and dice between matched predictions and targets, on points sampled by
        uncertainty."""
        preds = torch.cat([mask_logits[i][q] for i, (q, _) in enumerate(matches)])
        if preds.shape[0] == 0:
            zero = mask_logits.sum() * 0
            return dict(loss_mask=zero, loss_dice=zero)
        targets = torch.cat([gt_masks[i][g] for i, (_, g) in enumerate(matches)]).float()
        num_masks = max(reduce_mean(mask_logits.new_tensor(float(preds.shape[0]))).item(), 1.0)
        with torch.no_grad():
            points = get_uncertain_point_coords_with_randomness(
                preds[:, None], None, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio)
            point_targets = point_sample(targets[:, None], points)[:, 0]
        point_preds = point_sample(preds[:, None], points)[:, 0]
        return dict(
            loss_mask=self.loss_mask(point_preds.reshape(-1), point_targets.reshape(-1),
                                     avg_factor=num_masks * self.num_points),
            loss_dice=self.loss_dice(point_preds, point_targets, avg_factor=num_masks))

"""Mask2Former's set criterion with configurable losses, for softmax or sigmoid classifiers."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from mmcv.ops import point_sample
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.registry import MODELS, TASK_UTILS

from ..interfaces import implements

Match = Tuple[Tensor, Tensor]


@dataclass
class MaskClassificationOutput:
    """Class and mask logits of every prediction of a query decoder (``L + 1`` entries, the
    last one the final prediction): what a mask-classification model's ``_forward`` returns
    and its criterion reads."""
    #: ``(B, Q, K + 1)`` (softmax, last = no object) or ``(B, Q, K)`` (sigmoid) logits.
    cls_logits: List[Tensor]
    #: ``(B, Q, H/4, W/4)`` mask logits.
    mask_logits: List[Tensor]


SOFTMAX_EXAMPLE = dict(
    num_points=64,
    matcher=dict(type='HungarianMatcher', num_points=64, match_costs=[
        dict(type='ClassificationCost', weight=2.0),
        dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
        dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)]))
SIGMOID_EXAMPLE = dict(
    num_points=64,
    matcher=dict(type='HungarianMatcher', num_points=64, match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
        dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)]),
    loss_cls=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                  loss_weight=2.0),
    loss_mask=dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                   loss_weight=5.0))


@implements('mask_classification.Criterion', example=SOFTMAX_EXAMPLE)
@implements('mask_classification.Criterion', example=SIGMOID_EXAMPLE)
@MODELS.register_module()
class MaskClassificationCriterion(BaseModule):
    """Matches every prediction to the targets and sums the weighted losses (deep
    supervision), as Mask2Former; each loss is an mmdet loss config.

    The classification rule follows ``loss_cls``: a softmax loss (``CrossEntropyLoss``,
    ``use_sigmoid=False``) expects a last "no object" column, which unmatched queries target
    with weight ``no_object_weight``; a sigmoid loss (``FocalLoss``) expects ``K`` columns,
    unmatched queries targeting all-zero, normalised by the number of matched targets. The
    mask losses run on matched queries only, on ``num_points`` points chosen by uncertainty
    (``oversample_ratio``, ``importance_sample_ratio``); ``loss_mask`` may be a BCE
    (``CrossEntropyLoss`` with ``use_sigmoid=True``) or a sigmoid ``FocalLoss``.

    Args:
        matcher: e.g. :class:`~openseg_core.models.task_modules.HungarianMatcher` with costs
            matching the classification rule.
        loss_cls, loss_mask, loss_dice: mmdet loss configs (their ``loss_weight`` included).
        no_object_weight: class weight of "no object" (softmax only).
        num_points, oversample_ratio, importance_sample_ratio: point sampling of mask losses.

    Returns (mmdet naming): ``loss_cls``, ``loss_mask``, ``loss_dice`` for the last
    prediction and ``d{i}.loss_*`` for the earlier ones.
    """

    def __init__(self, matcher: dict,
                 loss_cls: dict = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False,
                                       loss_weight=2.0),
                 loss_mask: dict = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True,
                                        loss_weight=5.0),
                 loss_dice: dict = dict(type='mmdet.DiceLoss', use_sigmoid=True, activate=True,
                                        naive_dice=True, eps=1.0, loss_weight=5.0),
                 no_object_weight: float = 0.1, num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.matcher = TASK_UTILS.build(matcher)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)
        self.classification = 'sigmoid' if getattr(self.loss_cls, 'use_sigmoid', False) \
            else 'softmax'
        self.no_object_weight = no_object_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def forward(self, outputs: MaskClassificationOutput, targets: List[InstanceData],
                batch_img_metas: Optional[List[dict]] = None) -> Dict[str, Tensor]:
        """Args:
            outputs: per prediction, class and mask logits.
            targets: per image, ``labels (G,)`` in ``[0, K)`` and binary ``masks (G, H, W)``.
            batch_img_metas: per image, for match costs that need it (boxes).
        """
        losses = {}
        last = len(outputs.cls_logits) - 1
        for index, (cls_logits, mask_logits) in enumerate(zip(outputs.cls_logits,
                                                              outputs.mask_logits)):
            prefix = '' if index == last else f'd{index}.'
            for name, value in self.layer_loss(cls_logits, mask_logits, targets,
                                               batch_img_metas).items():
                losses[prefix + name] = value
        return losses

    def layer_loss(self, cls_logits: Tensor, mask_logits: Tensor, targets: List[InstanceData],
                   batch_img_metas: Optional[List[dict]] = None) -> Dict[str, Tensor]:
        """The losses of one prediction: ``(B, Q, K')`` class and ``(B, Q, h, w)`` mask
        logits."""
        batch, num_queries, num_columns = cls_logits.shape
        matches = self.match(cls_logits, mask_logits, targets, batch_img_metas)
        background = num_columns - 1 if self.classification == 'softmax' else num_columns
        labels = cls_logits.new_full((batch, num_queries), background, dtype=torch.long)
        for i, (q_idx, g_idx) in enumerate(matches):
            labels[i, q_idx] = targets[i].labels[g_idx]
        labels = labels.flatten()
        if self.classification == 'softmax':
            weights = torch.where(labels == background, self.no_object_weight, 1.0).to(
                cls_logits.dtype)
            loss_cls = self.loss_cls(cls_logits.flatten(0, 1), labels, weights,
                                     avg_factor=weights.sum())
        else:
            num_matched = sum(len(q) for q, _ in matches)
            avg = max(reduce_mean(cls_logits.new_tensor(float(num_matched))).item(), 1.0)
            loss_cls = self.loss_cls(cls_logits.flatten(0, 1), labels, avg_factor=avg)
        return dict(loss_cls=loss_cls, **self.mask_losses(mask_logits, matches, targets))

    def match(self, cls_logits: Tensor, mask_logits: Tensor, targets: List[InstanceData],
              batch_img_metas: Optional[List[dict]] = None) -> List[Match]:
        """Per image, the matched ``(query indices, target indices)``."""
        metas = batch_img_metas or [None] * len(targets)
        return [self.matcher.match(InstanceData(scores=cls_logits[i], masks=mask_logits[i]),
                                   targets[i], metas[i])
                for i in range(cls_logits.shape[0])]

    def mask_losses(self, mask_logits: Tensor, matches: List[Match],
                    targets: List[InstanceData]) -> Dict[str, Tensor]:
        """``loss_mask`` and ``loss_dice`` between matched predictions and targets, on points
        sampled by uncertainty."""
        # One gather over (image, query): its backward writes one zero-filled gradient.
        num_queries = mask_logits.shape[1]
        flat = torch.cat([q + i * num_queries for i, (q, _) in enumerate(matches)])
        preds = mask_logits.flatten(0, 1)[flat]
        if preds.shape[0] == 0:
            zero = mask_logits.sum() * 0
            return dict(loss_mask=zero, loss_dice=zero)
        gt_masks = torch.cat([targets[i].masks[g] for i, (_, g) in enumerate(matches)]).float()
        num_masks = max(reduce_mean(mask_logits.new_tensor(float(preds.shape[0]))).item(), 1.0)
        with torch.no_grad():
            points = get_uncertain_point_coords_with_randomness(
                preds[:, None], None, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio)
            point_targets = point_sample(gt_masks[:, None], points)[:, 0]
        point_preds = point_sample(preds[:, None], points)[:, 0]
        return dict(
            loss_mask=self.loss_mask(point_preds.reshape(-1), point_targets.reshape(-1),
                                     avg_factor=num_masks * self.num_points),
            loss_dice=self.loss_dice(point_preds, point_targets, avg_factor=num_masks))

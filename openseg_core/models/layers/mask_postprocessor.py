"""Turns mask-classification outputs into panoptic, semantic and instance predictions."""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmdet.models.seg_heads.panoptic_fusion_heads import MaskFormerFusionHead
from mmengine.structures import PixelData
from torch import Tensor

from openseg_core.registry import MODELS


@MODELS.register_module()
class MaskPostProcessor(MaskFormerFusionHead):
    """mmdet's ``MaskFormerFusionHead`` for an open vocabulary, plus semantic output.

    mmdet fixes the thing/stuff split at construction and has no semantic branch; an
    open-vocabulary model gets its vocabulary per call, so :meth:`predict` takes it.

    Args:
        panoptic_on, semantic_on, instance_on: which outputs to produce.
        object_mask_thr, iou_thr, max_per_image, filter_low_score: mmdet's ``test_cfg`` keys.
    """

    def __init__(self, panoptic_on: bool = True, semantic_on: bool = True,
                 instance_on: bool = True, object_mask_thr: float = 0.8,
                 iou_thr: float = 0.8, max_per_image: int = 100,
                 filter_low_score: bool = True):
        super().__init__(num_things_classes=0, num_stuff_classes=0, test_cfg=dict(
            object_mask_thr=object_mask_thr, iou_thr=iou_thr, max_per_image=max_per_image,
            filter_low_score=filter_low_score))
        self.outputs = dict(pan_results=panoptic_on, sem_results=semantic_on,
                            ins_results=instance_on)

    def semantic_postprocess(self, mask_cls: Tensor, mask_pred: Tensor) -> PixelData:
        """``(Q, K+1)`` logits, ``(Q, H, W)`` mask logits -> ``(1, H, W)`` class map."""
        probs = torch.einsum('qk,qhw->khw', F.softmax(mask_cls, dim=-1)[:, :-1],
                             mask_pred.sigmoid())
        return PixelData(sem_seg=probs.argmax(0, keepdim=True))

    def predict(self, mask_cls_results: Tensor, mask_pred_results: Tensor,
                batch_img_metas: List[dict], num_things: int,
                num_stuff: Optional[int] = 0, rescale: bool = True) -> List[dict]:
        """Post-process a batch.

        Args:
            mask_cls_results: ``(B, Q, K + 1)`` logits, the ``K`` classes things first.
            mask_pred_results: ``(B, Q, H_in, W_in)`` logits at the padded input size.
            batch_img_metas: with ``img_shape`` (and ``ori_shape`` when ``rescale``).
            num_things, num_stuff: the vocabulary's split, ``num_things + num_stuff = K``.

        Returns:
            per image, a dict with ``pan_results``/``sem_results`` (``PixelData``) and
            ``ins_results`` (``InstanceData``) as enabled.
        """
        self.num_things_classes, self.num_stuff_classes = num_things, num_stuff
        self.num_classes = num_things + num_stuff
        if mask_cls_results.shape[-1] != self.num_classes + 1:
            raise ValueError(f'{mask_cls_results.shape[-1] - 1} class logits for a vocabulary '
                             f'of {self.num_classes}')
        results = []
        for mask_cls, mask_pred, meta in zip(mask_cls_results, mask_pred_results,
                                             batch_img_metas):
            height, width = meta['img_shape'][:2]
            mask_pred = mask_pred[:, :height, :width]
            if rescale and tuple(meta['ori_shape'][:2]) != (height, width):
                mask_pred = F.interpolate(mask_pred[:, None], size=meta['ori_shape'][:2],
                                          mode='bilinear', align_corners=False)[:, 0]
            result = {}
            if self.outputs['pan_results']:
                result['pan_results'] = self.panoptic_postprocess(mask_cls, mask_pred)
            if self.outputs['sem_results']:
                result['sem_results'] = self.semantic_postprocess(mask_cls, mask_pred)
            if self.outputs['ins_results']:
                result['ins_results'] = self.instance_postprocess(mask_cls, mask_pred)
            results.append(result)
        return results

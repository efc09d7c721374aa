"""Referring segmentation: the object query that is the phrase, and its mask."""
from typing import Dict, List

import torch
from mmdet.structures import SampleList
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from openseg_core.models.interfaces import implements

from ...registry import MODELS


@implements(covered_by='xdecoder.XDecoder')
@MODELS.register_module()
class ReferringTask(BaseModule):
    """Object queries attend the phrase's token features; the query matched to the referred
    mask (the model criterion's matcher, with each query's probability of being the phrase as
    class cost, + point BCE + dice) is the target of ``loss_cls``, a cross-entropy *over
    queries*, plus its mask losses (the criterion's), every layer (``ref.*`` losses). No
    "background" concept here: the other queries may hold other objects, which generic
    segmentation must keep classifying.

    Args:
        loss_cls: mmdet loss config of the cross-entropy over queries.
    """

    def __init__(self, loss_cls: dict = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False,
                                             loss_weight=2.0), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.loss_cls = MODELS.build(loss_cls)

    def loss(self, model, feats, samples: SampleList) -> Dict[str, Tensor]:
        outputs = model.referring_outputs(feats, [s.text for s in samples])
        device = feats.mask_features.device
        targets = []
        for sample in samples:
            masks = sample.gt_instances.masks
            masks = (masks.to_tensor(torch.long, device) if hasattr(masks, 'to_tensor')
                     else masks.long())
            if len(masks) != 1:
                raise ValueError('a referring sample needs exactly one target mask (the '
                                 f'referred object); got {len(masks)}')
            targets.append(InstanceData(labels=masks.new_zeros(1), masks=masks))
        losses = {}
        last = len(outputs['logits']) - 1
        for layer, (logits, masks) in enumerate(zip(outputs['logits'],
                                                    outputs['mask_logits'])):
            # The matcher's class cost is then each query's probability of being the phrase.
            as_classes = torch.stack([logits, torch.zeros_like(logits)], dim=-1)
            matches = model.criterion.match(as_classes, masks, targets)
            target = torch.cat([q for q, _ in matches])
            prefix = 'ref.' if layer == last else f'ref.d{layer}.'
            losses[prefix + 'loss_cls'] = self.loss_cls(logits, target)
            for name, value in model.criterion.mask_losses(masks, matches, targets).items():
                losses[prefix + name] = value
        return losses

    def predict(self, model, feats, samples: SampleList, rescale: bool = True) -> List[dict]:
        """``pred_instances``: the most likely query's mask ``(1, H, W)`` and its score."""
        masks, scores = model.refer(feats, [s.text for s in samples])
        results = []
        for i, sample in enumerate(samples):
            mask = model.mask_to_image(masks[i], sample.metainfo['batch_input_shape'],
                                       sample.metainfo)
            results.append(dict(pred_instances=InstanceData(
                masks=mask[None], scores=scores[i:i + 1],
                labels=scores.new_zeros(1, dtype=torch.long))))
        return results

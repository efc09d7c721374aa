"""Generic (panoptic / semantic / instance) segmentation with X-Decoder's object queries."""
from typing import Dict, List

from mmdet.structures import SampleList
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.models import panoptic_targets
from openseg_core.models.interfaces import implements

from ...registry import MODELS


@implements(covered_by='xdecoder.XDecoder')
@MODELS.register_module()
class GenericTask(BaseModule):
    """``L_cls`` between the ``m - 1`` object outputs and the ``C`` concept embeddings
    ("background" included; prompt "an image of a {}."), mask BCE + dice after Hungarian
    matching, every decoder layer (the model's ``criterion``); predictions by the model's
    ``postprocessor``: ``pred_panoptic_seg``, ``pred_sem_seg``, ``pred_instances``."""

    def loss(self, model, feats, samples: SampleList) -> Dict[str, Tensor]:
        outputs = model.generic_outputs(feats)
        targets = panoptic_targets(samples, model.require_vocabulary())
        return model.criterion(outputs, targets, [s.metainfo for s in samples])

    def predict(self, model, feats, samples: SampleList, rescale: bool = True) -> List[dict]:
        outputs = model.generic_outputs(feats, intermediate_masks=False)
        return model.postprocessor.predict(
            outputs.cls_logits[-1], outputs.mask_logits[-1], [s.metainfo for s in samples],
            model.require_vocabulary(), rescale)

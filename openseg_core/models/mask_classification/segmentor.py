"""The core's reference model: open-vocabulary mask classification (Mask2Former-style)."""
from typing import Dict, Optional

from mmdet.structures import SampleList
from torch import Tensor

from openseg_core.registry import MODELS

from ..interfaces import implements
from .criterion import MaskClassificationOutput
from .model import MaskClassificationModel
from .targets import panoptic_targets


@implements('Model', example='openseg_core::reference/ovseg_tiny_shapes.py',
            inputs=dict(tasks=('panoptic',)))
@MODELS.register_module()
class OpenVocabMaskSegmentor(MaskClassificationModel):
    """Backbone -> pixel decoder -> masked-attention query decoder -> text-similarity classes
    (the arguments of :class:`MaskClassificationModel`).

    Args:
        region_ensemble: optional, e.g. :class:`CLIPRegionEnsemble`: at inference, classify
            each mask with CLIP's image side too (FC-CLIP). Needs a CLIP image backbone
            (:class:`~openseg_core.models.backbones.OpenCLIPImageBackbone`, frozen) and the
            text encoder of the same CLIP.
    """

    def __init__(self, *args, region_ensemble: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.region_ensemble = None
        if region_ensemble is not None:
            if not all(hasattr(self.backbone, name) for name in ('embed_regions', 'embed_boxes')):
                raise ValueError(
                    f'region_ensemble classifies masks with the backbone\'s CLIP features, but '
                    f'{type(self.backbone).__name__} is no CLIP image tower: use '
                    'OpenCLIPImageBackbone, or remove region_ensemble')
            if self.postprocessor.classification != 'softmax':
                raise ValueError('region_ensemble combines softmax probabilities: use a '
                                 "softmax head (classification='softmax')")
            self.region_ensemble = MODELS.build(region_ensemble)

    def extract_feat(self, inputs: Tensor):
        """``(B, 3, H, W)`` -> mask features ``(B, C, H/4, W/4)`` and the memories."""
        return self.pixel_decoder(list(self.backbone(inputs)))

    def class_embeddings(self) -> Tensor:
        """``(K, D)`` text embeddings of the current vocabulary (cached by the encoder)."""
        return self.text_encoder.encode_vocabulary(self.require_vocabulary().names)

    def _network(self, inputs: Tensor, intermediate_masks: bool = True):
        backbone_feats = self.backbone(inputs)
        decoded = self.query_decoder(*self.pixel_decoder(list(backbone_feats)),
                                     intermediate_masks=intermediate_masks)
        class_embeds = self.class_embeddings()
        outputs = MaskClassificationOutput(
            cls_logits=[self.head(q, class_embeds) for q in decoded.query_embeds],
            mask_logits=decoded.mask_logits)
        return outputs, backbone_feats, class_embeds

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> MaskClassificationOutput:
        """Network forward: per prediction, class and mask logits."""
        return self._network(inputs)[0]

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        outputs = self._forward(inputs)
        targets = panoptic_targets(data_samples, self.require_vocabulary())
        return self.criterion(outputs, targets, [s.metainfo for s in data_samples])

    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        # Only the last prediction is used: the earlier masks are never made at H/4.
        outputs, backbone_feats, class_embeds = self._network(inputs, intermediate_masks=False)
        cls_logits, mask_logits = outputs.cls_logits[-1], outputs.mask_logits[-1]
        if self.region_ensemble is not None:
            region_embeds, valid = self.region_ensemble.embed(self.backbone, inputs,
                                                              backbone_feats[-1], mask_logits)
            cls_logits = self.region_ensemble(cls_logits, region_embeds, class_embeds,
                                              self.backbone.logit_scale, valid,
                                              self.require_vocabulary())
        results = self.postprocessor.predict(cls_logits, mask_logits,
                                             [s.metainfo for s in data_samples],
                                             self.require_vocabulary(), rescale)
        return self.add_pred_to_datasample(data_samples, results)

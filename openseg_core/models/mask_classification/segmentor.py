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
    (the arguments of :class:`MaskClassificationModel`)."""

    def extract_feat(self, inputs: Tensor):
        """``(B, 3, H, W)`` -> mask features ``(B, C, H/4, W/4)`` and the memories."""
        return self.pixel_decoder(list(self.backbone(inputs)))

    def class_embeddings(self) -> Tensor:
        """``(K, D)`` text embeddings of the current vocabulary (cached by the encoder)."""
        return self.text_encoder.encode_vocabulary(self.require_vocabulary().names)

    def _forward(self, inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> MaskClassificationOutput:
        """Network forward: per prediction, class and mask logits."""
        mask_features, memories = self.extract_feat(inputs)
        decoded = self.query_decoder(mask_features, memories)
        class_embeds = self.class_embeddings()
        return MaskClassificationOutput(
            cls_logits=[self.head(q, class_embeds) for q in decoded.query_embeds],
            mask_logits=decoded.mask_logits)

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        outputs = self._forward(inputs)
        targets = panoptic_targets(data_samples, self.require_vocabulary())
        return self.criterion(outputs, targets, [s.metainfo for s in data_samples])

    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        outputs = self._forward(inputs)
        results = self.postprocessor.predict(
            outputs.cls_logits[-1], outputs.mask_logits[-1],
            [s.metainfo for s in data_samples], self.require_vocabulary(), rescale)
        return self.add_pred_to_datasample(data_samples, results)


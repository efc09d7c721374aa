"""The core's reference model: open-vocabulary mask classification (Mask2Former-style)."""
from typing import Dict, Optional, Sequence

from mmdet.structures import SampleList
from torch import Tensor

from openseg_core.registry import MODELS

from ..base import OpenSegModel
from ..interfaces import implements
from .criterion import MaskClassificationOutput
from .targets import panoptic_targets


@implements('Model', example='openseg_core::reference/ovseg_tiny_shapes.py',
            inputs=dict(tasks=('panoptic',)))
@MODELS.register_module()
class OpenVocabMaskSegmentor(OpenSegModel):
    """Backbone -> pixel decoder -> masked-attention query decoder -> text-similarity classes.

    Args:
        backbone: ``(B, 3, H, W)`` -> features at strides 4-32 (e.g. mmdet ``ResNet``).
        pixel_decoder: -> ``(B, C, H/4, W/4)`` mask features + memories (e.g. mmdet
            ``MSDeformAttnPixelDecoder``).
        query_decoder: e.g. :class:`MaskedAttentionQueryDecoder`.
        text_encoder: e.g. :class:`OpenCLIPTextEncoder`.
        head: e.g. :class:`TextClassifierHead`.
        criterion: e.g. :class:`MaskClassificationCriterion`.
        postprocessor: e.g. :class:`MaskPostProcessor`.
        thing_classes, stuff_classes: the initial vocabulary.
        data_preprocessor: e.g. mmdet ``DetDataPreprocessor``.

    Raises:
        ValueError: the head, criterion and post-processor disagree on the classification
            rule (softmax with "no object" or sigmoid).
    """

    def __init__(self, backbone: dict, pixel_decoder: dict, query_decoder: dict,
                 text_encoder: dict, head: dict, criterion: dict, postprocessor: dict,
                 thing_classes: Sequence[str] = (), stuff_classes: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(thing_classes=thing_classes, stuff_classes=stuff_classes,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.query_decoder = MODELS.build(query_decoder)
        self.text_encoder = MODELS.build(text_encoder)
        self.head = MODELS.build(head)
        self.criterion = MODELS.build(criterion)
        self.postprocessor = MODELS.build(postprocessor)
        check_classification(self.head, self.criterion, self.postprocessor)

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


def check_classification(head, criterion, postprocessor) -> None:
    """Raise if a mask classifier's parts disagree on softmax-with-no-object vs sigmoid."""
    rules = {'head': head.classification, 'criterion': criterion.classification,
             'postprocessor': postprocessor.classification}
    if len(set(rules.values())) > 1:
        raise ValueError(
            'the classification rule differs between parts: '
            + ', '.join(f'{k} {v}' for k, v in rules.items())
            + "; set head.classification and postprocessor.classification to the criterion's "
            "(a sigmoid loss_cls such as FocalLoss means 'sigmoid')")

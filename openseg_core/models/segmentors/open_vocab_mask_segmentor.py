"""The core's reference model: open-vocabulary mask classification (Mask2Former-style)."""
from typing import Dict, Optional, Sequence

from mmdet.structures import SampleList
from mmengine.model import BaseModel
from torch import Tensor

from openseg_core.registry import MODELS

from .open_vocabulary import OpenVocabularyMixin


@MODELS.register_module()
class OpenVocabMaskSegmentor(OpenVocabularyMixin, BaseModel):
    """Backbone -> pixel decoder -> masked-attention query decoder -> text-similarity classes.

    The vocabulary is data, not architecture: :meth:`set_vocabulary` (called by
    ``VocabularyHook`` from each dataset's ``thing_classes``/``stuff_classes``, or by the user)
    chooses the classes; their text embeddings come from the cached text encoder.

    Args:
        backbone: ``(B, 3, H, W)`` -> features at strides 4-32 (e.g. mmdet ``ResNet``).
        pixel_decoder: -> ``(B, C, H/4, W/4)`` mask features + memories (e.g. mmdet
            ``MSDeformAttnPixelDecoder``).
        query_decoder: e.g. :class:`MaskedAttentionQueryDecoder`.
        text_encoder: e.g. :class:`OpenCLIPTextEncoder`.
        head: e.g. :class:`TextClassifierHead`.
        loss: e.g. :class:`MaskClassificationLoss`.
        postprocessor: e.g. :class:`MaskPostProcessor`.
        thing_classes, stuff_classes: the initial vocabulary.
        data_preprocessor: e.g. mmdet ``DetDataPreprocessor``.
    """

    def __init__(self, backbone: dict, pixel_decoder: dict, query_decoder: dict,
                 text_encoder: dict, head: dict, loss: dict, postprocessor: dict,
                 thing_classes: Sequence[str] = (), stuff_classes: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.query_decoder = MODELS.build(query_decoder)
        self.text_encoder = MODELS.build(text_encoder)
        self.head = MODELS.build(head)
        self.loss_module = MODELS.build(loss)
        self.postprocessor = MODELS.build(postprocessor)
        if thing_classes or stuff_classes:
            self.set_vocabulary(thing_classes, stuff_classes)

    def class_embeddings(self) -> Tensor:
        """``(K, D)`` text embeddings of the current vocabulary (cached by the encoder)."""
        if not self.classes:
            raise RuntimeError('no vocabulary: call set_vocabulary() or give thing_classes')
        return self.text_encoder.encode_vocabulary(self.classes)

    def _forward(self, inputs: Tensor, data_samples: Optional[SampleList] = None) -> Dict:
        """Network forward: per decoder layer, ``cls_logits (B, Q, K+1)`` and
        ``mask_logits (B, Q, H/4, W/4)``."""
        feats = self.backbone(inputs)
        mask_features, memories = self.pixel_decoder(list(feats))
        decoded = self.query_decoder(mask_features, memories)
        class_embeds = self.class_embeddings()
        cls_logits = [self.head(q, class_embeds) for q in decoded['query_embeds']]
        return dict(cls_logits=cls_logits, mask_logits=decoded['mask_logits'])

    def loss(self, inputs: Tensor, data_samples: SampleList) -> Dict[str, Tensor]:
        outputs = self._forward(inputs)
        gt_labels, gt_masks = self.panoptic_targets(data_samples)
        return self.loss_module(outputs['cls_logits'], outputs['mask_logits'], gt_labels,
                                gt_masks)

    def predict(self, inputs: Tensor, data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        outputs = self._forward(inputs)
        self.segment(outputs['cls_logits'][-1], outputs['mask_logits'][-1], inputs,
                     data_samples, rescale)
        return data_samples

    def tensor_outputs(self, inputs: Tensor) -> Dict:
        return self._forward(inputs)

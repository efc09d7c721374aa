"""The base of mask-classification models: the parts every one of them builds."""
from typing import Optional, Sequence

import torch
from torch import nn

from openseg_core.registry import MODELS

from ..base import OpenSegModel
from ..layers import convert_fast_layers


class MaskClassificationModel(OpenSegModel):
    """An :class:`OpenSegModel` made of a backbone, a pixel decoder, a query decoder, a text
    encoder, a classification head, a criterion and a post-processor (the core's reference
    segmentor, X-Decoder, ODISE's mask generator), which must agree on the classification rule.

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
        channels_last: keep the backbone's and the pixel decoder's convolution weights, and
            the images, in NHWC memory layout: the same results (to float rounding), faster
            convolutions on oneDNN (CPU) and on tensor cores (docs/reference_model.md).

    Raises:
        ValueError: the head, criterion and post-processor disagree on the classification
            rule (softmax with "no object" or sigmoid).
    """

    def __init__(self, backbone: dict, pixel_decoder: dict, query_decoder: dict,
                 text_encoder: dict, head: dict, criterion: dict, postprocessor: dict,
                 thing_classes: Sequence[str] = (), stuff_classes: Sequence[str] = (),
                 data_preprocessor: Optional[dict] = None, channels_last: bool = False,
                 init_cfg=None):
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
        # When built, not in init_weights: tools/test.py and the demo load a checkpoint
        # without initialising.
        convert_fast_layers(self)
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
            self.pixel_decoder.to(memory_format=torch.channels_last)
            # A hook, not a line in forward: subclasses and the region ensemble call the
            # backbone themselves.
            self.backbone.register_forward_pre_hook(_images_channels_last)

    def init_weights(self) -> None:
        """mmengine's, in NCHW layout: random initialisers fill tensors in memory order, so
        the layout would otherwise change the weights a seed gives."""
        if not self.channels_last:
            return super().init_weights()
        for part in (self.backbone, self.pixel_decoder):
            part.to(memory_format=torch.contiguous_format)
        super().init_weights()
        for part in (self.backbone, self.pixel_decoder):
            part.to(memory_format=torch.channels_last)


def _images_channels_last(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: a ``(B, 3, H, W)`` first argument in NHWC layout."""
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), ) + tuple(args[1:])
    return args


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

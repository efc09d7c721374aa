"""Spatial convolutions on their faster CPU paths: trained in the memory layout whose backward
is faster here, and 3 x 3 kernels by Winograd's algorithm (``winograd.py``) where that is
faster, with gradients too.

A channels-last model runs its convolutions in NHWC, the faster layout without gradients on
the CPUs this project measured, and for 1 x 1 kernels with them too. Without AVX-512, oneDNN's
NHWC backward of a spatial kernel is the slower one (AMD Zen 3, 2 cores, batch 2, forward and
backward): 3 x 3, 256 channels at 128 x 128 took 1583 ms against 933 ms in NCHW, 3 x 3 with
64 channels at 128 x 128 94 against 61 ms; 1 x 1 with 256 channels 217 against 344 ms the
other way round. There, such a convolution with gradients copies its input and weight to
NCHW and its output back (a pass over each map, a few milliseconds against hundreds).
"""
import math
from typing import Optional

import torch
from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
from torch import Tensor, nn

from .inference_cache import inference_cache
from .linear import (ACTIVATIONS, cpu_has_avx512, needs_gradient, onednn_operator,
                     onednn_usable)
from .winograd import winograd_applies, winograd_conv2d

#: Whether spatial convolutions train in NHWC when the model is channels-last (AVX-512 CPUs,
#: where the project's training figures were measured in that layout).
NHWC_SPATIAL_TRAINING = cpu_has_avx512()


def _wants_nchw(conv: nn.Conv2d, x: Tensor, weight: Tensor) -> bool:
    return (not NHWC_SPATIAL_TRAINING and conv.groups == 1 and conv.kernel_size != (1, 1)
            and needs_gradient(x, weight)
            and x.device.type == 'cpu' and x.dim() == 4 and x.shape[1] > 1
            and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last))


class FastConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same values to float rounding) that runs a 3 x 3 kernel by
    Winograd's algorithm where that is faster (:func:`~.winograd.winograd_applies`), and
    otherwise a channels-last input in NCHW when it has gradients, its kernel is spatial and
    this CPU's NHWC backward is the slower (module docstring); the output keeps the input's
    memory format."""

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if winograd_applies(self, x, weight, bias):
            return winograd_conv2d(x, weight, bias, inference_cache(self))
        if not _wants_nchw(self, x, weight):
            return super()._conv_forward(x, weight, bias)
        out = super()._conv_forward(x.contiguous(), weight.contiguous(), bias)
        return out.contiguous(memory_format=torch.channels_last)


_pointwise_convolution = onednn_operator('_convolution_pointwise')


def conv2d_activation(conv: nn.Conv2d, x: Tensor, activation: str) -> Tensor:
    """``activation(conv(x))`` for a ``conv`` with zero padding (``activation`` one of
    ``layers.linear.ACTIVATIONS``): without gradients on float32 CPU tensors, one oneDNN
    convolution with the activation as its post-op (applied as the output is written, not in
    a pass of its own); ``conv`` and torch's function otherwise. The same values to float
    rounding."""
    fused, function = ACTIVATIONS[activation]
    if (_pointwise_convolution is None or needs_gradient(x, conv.weight, conv.bias)
            or conv.padding_mode != 'zeros' or isinstance(conv.padding, str)
            or not onednn_usable(x, conv.weight)):
        return function(conv(x))
    return _pointwise_convolution(x, conv.weight, conv.bias, list(conv.padding),
                                  list(conv.stride), list(conv.dilation), conv.groups, *fused)


def flop_formulas() -> dict:
    """FLOP formulas, for torch's ``FlopCounterMode(custom_mapping=...)``, of the operators
    these layers call that torch's counter does not know (the fused convolution)."""
    if _pointwise_convolution is None:
        return {}

    def convolution(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])

    return {_pointwise_convolution: convolution}


def convert_conv2d(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Conv2d`` inside ``module`` (and mmcv's, which only adds the
    empty-input case torch now handles) a :class:`FastConv2d`, in place (parameters and
    state-dict keys unchanged); return ``module``."""
    for child in module.modules():
        if type(child) in (nn.Conv2d, MMCVConv2d):
            child.__class__ = FastConv2d
    return module

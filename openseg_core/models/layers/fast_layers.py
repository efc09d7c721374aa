"""One call that puts a model's mmcv / torch layers on their fast CPU paths."""
from torch import nn

from .attention import convert_multihead_attention
from .deformable_attention import convert_deformable_attention
from .deformable_pixel_decoder import convert_pixel_decoder
from .fast_conv import convert_conv2d
from .fast_conv import flop_formulas as convolution_flop_formulas
from .folded_batch_norm import convert_batch_norm_folding
from .linear import convert_linear
from .linear import flop_formulas as linear_flop_formulas
from .winograd import flop_formulas as winograd_flop_formulas


def convert_fast_layers(module: nn.Module) -> nn.Module:
    """Swap, in place and with state-dict keys unchanged, mmcv's deformable attention (no CPU
    kernel), mmcv's multi-head attention (asks torch for weights it discards), mmdet's
    deformable pixel decoder (copies its maps between layouts), plain ``nn.Linear`` layers
    (MKL's slower GEMM on AMD CPUs), convolution / batch-norm pairs (the norm a pass of its
    own) and convolutions (a slower NHWC backward on some CPUs, no Winograd kernel in oneDNN)
    for subclasses that compute the same outputs faster; return ``module``.

    Models call it on themselves when built, since mmdet builds these layers by class, not by
    config; the benchmark calls it on the parts it lends mmdet's model with
    ``--mmdet-fast-layers``.
    """
    convert_deformable_attention(module)
    convert_pixel_decoder(module)
    convert_multihead_attention(module)
    convert_batch_norm_folding(module)
    convert_conv2d(module)
    return convert_linear(module)


def flop_formulas() -> dict:
    """FLOP formulas, for torch's ``FlopCounterMode(custom_mapping=...)``, of the operators the
    converted layers call that torch's counter does not know."""
    return {**linear_flop_formulas(), **winograd_flop_formulas(),
            **convolution_flop_formulas()}

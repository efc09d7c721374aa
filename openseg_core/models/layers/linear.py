"""Linear layers through oneDNN on a CPU.

torch sends a float32 ``nn.Linear`` on the CPU to MKL's GEMM, and on AMD processors MKL runs
its AVX2 code: about 200 GFLOP/s on this project's 2-core Zen machine, where oneDNN's
AVX-512 kernels (the ones behind torch's convolutions) reach 460-515 GFLOP/s on the same
products (docs/reference_model.md, "Speed"). A ``(rows, in)`` matrix is a ``(1, in, rows, 1)``
image in NHWC layout without a copy, and a linear layer is a 1 x 1 convolution of it, so
torch's own convolution runs the product on oneDNN.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.wrappers import Linear as MMCVLinear
from torch import Tensor, nn

#: Fewest rows worth a convolution call, measured on the project's CPU: below them the call's
#: overhead outweighs the faster kernel. The backward of a 1 x 1 convolution is slower than
#: MKL's for a hundred rows and faster from a few hundred, hence the higher floor with autograd.
MIN_ROWS_INFERENCE = 64
MIN_ROWS_TRAINING = 256


def onednn_usable(*tensors: Tensor) -> bool:
    """True when torch would run convolutions of these tensors on oneDNN: float32 on the CPU,
    oneDNN built in and not switched off."""
    return (all(t.device.type == 'cpu' and t.dtype == torch.float32 for t in tensors)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def onednn_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` (``(..., in)`` -> ``(..., out)``), computed as a 1 x 1
    convolution on float32 CPU tensors with enough rows, as ``F.linear`` elsewhere.

    The same values to float summation order (about 1e-6 relative).
    """
    rows = x.numel() // x.shape[-1] if x.dim() and x.shape[-1] else 0
    tracked = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if (rows < (MIN_ROWS_TRAINING if tracked else MIN_ROWS_INFERENCE)
            or not onednn_usable(x, weight)):
        return F.linear(x, weight, bias)
    in_features = x.shape[-1]
    image = x.reshape(1, rows, 1, in_features).permute(0, 3, 1, 2)  # (1, in, rows, 1) NHWC
    out = F.conv2d(image, weight[:, :, None, None], bias)  # (1, out, rows, 1) NHWC
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` (same parameters) whose forward is :func:`onednn_linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return onednn_linear(x, self.weight, self.bias)


def convert_linear(module: nn.Module) -> nn.Module:
    """Turn every plain ``nn.Linear`` inside ``module`` (and mmcv's, which only adds the
    empty-input case torch now handles) into a :class:`OneDNNLinear` in place (parameters and
    state-dict keys unchanged) and return ``module``.

    Other subclasses are left alone: they may override ``forward`` (LoRA layers; torch's
    attention output projection, which its attention reads by weight, not by call). The class
    is swapped on the instance, as ``torch.nn.utils.parametrize`` does.
    """
    for child in module.modules():
        if type(child) in (nn.Linear, MMCVLinear):
            child.__class__ = OneDNNLinear
    return module

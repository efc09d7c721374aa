"""Linear layers through oneDNN on a CPU.

torch sends a float32 ``nn.Linear`` on the CPU to MKL's GEMM, and on AMD processors MKL runs
its AVX2 code: about 200 GFLOP/s on this project's 2-core Zen machine, where oneDNN's
AVX-512 kernels (the ones behind torch's convolutions) reach 460-515 GFLOP/s on the same
products (docs/reference_model.md, "Speed"). A ``(rows, in)`` matrix is a ``(1, in, rows, 1)``
image in NHWC layout without a copy, and a linear layer is a 1 x 1 convolution of it, so
torch's own convolution runs the product on oneDNN.

Without gradients, torch's ``mkldnn::_linear_pointwise`` (the operator Inductor's CPU backend
emits for frozen linear layers) runs the same product as a oneDNN inner product, with less
overhead per call than a convolution: 0.13 ms against 0.20 ms (MKL: 0.28 ms) for the
``101 x 512 x 512`` products of a query decoder, the same time for thousands of rows.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.wrappers import Linear as MMCVLinear
from torch import Tensor, nn

from .inference_cache import InferenceCache

#: Fewest rows worth a convolution call, measured on an AVX-512 CPU (AMD Zen 4): below them
#: the call's overhead outweighs the faster kernel. The backward of a 1 x 1 convolution is
#: slower than MKL's for a hundred rows and faster from a few hundred there, hence the higher
#: floor with autograd (and no convolution at all with autograd without AVX-512, below).
MIN_ROWS_INFERENCE = 64
MIN_ROWS_TRAINING = 256
#: Fewest rows for the inner product without gradients (one row: MKL's call is cheaper).
MIN_ROWS_POINTWISE = 4


def cpu_has_avx512() -> bool:
    """True when torch's CPU kernels run AVX-512 code here (``ATEN_CPU_CAPABILITY`` can lower
    it), as oneDNN's then do."""
    return torch.backends.cpu.get_cpu_capability().startswith('AVX512')


#: Whether products with gradients go to oneDNN's convolution. Without AVX-512, oneDNN runs
#: AVX2 code as MKL does, and the convolution's backward is the slower one: forward and
#: backward of ``10752 x 256 x 1024`` took 213 ms against MKL's 165 ms, ``10752 x 256 x 256``
#: 63 against 43 ms (AMD Zen 3, 2 cores). Without gradients the paths are within 10 % there.
ONEDNN_TRAINING_PRODUCTS = cpu_has_avx512()


def onednn_operator(name: str):
    """torch's ``mkldnn::<name>`` operator (the fused ones Inductor's CPU backend emits), or
    None in a torch built without oneDNN."""
    try:
        return getattr(torch.ops.mkldnn, name)
    except (AttributeError, RuntimeError):
        return None


_pointwise_linear = onednn_operator('_linear_pointwise')


def flop_formulas() -> dict:
    """FLOP formulas, for torch's ``FlopCounterMode(custom_mapping=...)``, of the operators
    these layers call that torch's counter does not know (the inner product)."""
    if _pointwise_linear is None:
        return {}

    def inner_product(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(out_shape) * x_shape[-1]

    # The counter looks formulas up by the operator (the packet), not its overload.
    return {_pointwise_linear: inner_product}


def needs_gradient(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd records an operation on these tensors (``None`` entries allowed):
    the test every fast path here uses to choose between its inference and training forms."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def onednn_usable(*tensors: Tensor) -> bool:
    """True when torch would run convolutions of these tensors on oneDNN: float32 on the CPU,
    oneDNN built in and not switched off."""
    return (all(t.device.type == 'cpu' and t.dtype == torch.float32 for t in tensors)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


#: Activations :func:`onednn_linear` can apply: the inner product's post-op (name, scalars,
#: algorithm) and torch's function, for the other paths.
ACTIVATIONS = {
    'relu': (('relu', [], ''), F.relu),
    'gelu': (('gelu', [], 'none'), F.gelu),
    'gelu_tanh': (('gelu', [], 'tanh'), lambda x: F.gelu(x, approximate='tanh')),
}


def _copy_of(weight: Tensor, cache: InferenceCache) -> Tensor:
    """``weight`` in oneDNN's own layout, copied once per version."""
    # The layout oneDNN picks for products of 64 rows: as fast as any from 4 rows to
    # thousands (a layout for one row is slower from 16).
    return cache.get(('inner_product', weight.storage_offset(), tuple(weight.shape),
                      weight.stride()),
                     (weight, ), lambda: torch.ops.mkldnn._reorder_linear_weight(
                         weight.detach().contiguous(), 64))


def onednn_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                  cache: Optional[InferenceCache] = None,
                  activation: Optional[str] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` (``(..., in)`` -> ``(..., out)``) on float32 CPU tensors
    with enough rows: without gradients oneDNN's inner product, with them a 1 x 1
    convolution; ``F.linear`` elsewhere. Then ``activation``, if given (one of
    :data:`ACTIVATIONS`), fused into the inner product.

    The inner product refuses a weight that starts inside its storage (a slice of torch's
    ``in_proj_weight``): such a weight takes it through a copy kept in ``cache`` (the calling
    module's, :func:`inference_cache`), the convolution without one.
    The same values to float summation order (about 1e-6 relative).
    """
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f'activation must be one of {tuple(ACTIVATIONS)}, not {activation!r}')
    fused = ACTIVATIONS[activation][0] if activation else ('none', [], '')
    rows = x.numel() // x.shape[-1] if x.dim() and x.shape[-1] else 0
    # The inner product has no backward: a trainable bias alone needs the other paths too.
    tracked = needs_gradient(x, weight, bias)
    if (not tracked and rows >= MIN_ROWS_POINTWISE and _pointwise_linear is not None
            and onednn_usable(x, weight)
            and (bias is None or bias.dtype == torch.float32)):
        plain = weight.storage_offset() == 0 and weight.is_contiguous()
        if plain or cache is not None:
            return _pointwise_linear(x, weight if plain else _copy_of(weight, cache), bias,
                                     *fused)
    if (rows < (MIN_ROWS_TRAINING if tracked else MIN_ROWS_INFERENCE)
            or (tracked and not ONEDNN_TRAINING_PRODUCTS) or not onednn_usable(x, weight)):
        out = F.linear(x, weight, bias)
    else:
        in_features = x.shape[-1]
        image = x.reshape(1, rows, 1, in_features).permute(0, 3, 1, 2)  # (1, in, rows, 1)
        out = F.conv2d(image, weight[:, :, None, None], bias)  # (1, out, rows, 1) NHWC
        out = out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])
    return ACTIVATIONS[activation][1](out) if activation else out


#: Element-wise operations :func:`onednn_linear_binary` can fuse, with torch's functions for
#: the other paths.
BINARY_OPS = {'add': torch.add, 'mul': torch.mul}


def onednn_linear_binary(x: Tensor, other: Tensor, weight: Tensor,
                         bias: Optional[Tensor] = None, op: str = 'add') -> Tensor:
    """``op(F.linear(x, weight, bias), other)`` (``(rows, in)`` and ``(rows, out)`` ->
    ``(rows, out)``; ``op`` one of :data:`BINARY_OPS`): without gradients on float32 CPU
    tensors, one oneDNN inner product with the operation as its post-op, a residual add or a
    gate applied as the product is written instead of in a pass of its own; torch's
    operations otherwise. The same values to float summation order."""
    if op not in BINARY_OPS:
        raise ValueError(f'op must be one of {tuple(BINARY_OPS)}, not {op!r}')
    if (not needs_gradient(x, other, weight, bias) and _pointwise_linear is not None
            and x.dim() == 2
            and x.shape[0] >= MIN_ROWS_POINTWISE and onednn_usable(x, other, weight)
            and weight.storage_offset() == 0 and weight.is_contiguous()
            and (bias is None or bias.dtype == torch.float32)
            and other.shape == (x.shape[0], weight.shape[0])):
        return _pointwise_linear.binary(x, other.contiguous(), weight, bias, op)
    return BINARY_OPS[op](F.linear(x, weight, bias), other)


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

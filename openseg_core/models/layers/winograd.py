"""3 x 3 convolutions by Winograd's minimal filtering, F(4 x 4, 3 x 3), on a CPU.

oneDNN 3 has no x86 Winograd kernels, so torch runs every 3 x 3 convolution directly: 9
multiplications per output and input channel. F(4 x 4, 3 x 3) (Lavin and Gray, 2016) computes
a 4 x 4 output tile from a 6 x 6 input tile with 36 products instead of 144: the 36 positions
of the transformed tiles are 36 matrix products ``(K, C) x (C, tiles)``, and the transforms
before and after are small linear maps over each tile. The tiles are processed a band of
rows at a time so that the transformed tiles (2.25 times the band) stay in the caches: a
whole 512-channel 128 x 128 map at once spent more time in page faults and memory than in
the products.

Measured on a 2-core AMD Zen 3 (AVX2), one image, medians of 7, NCHW (2026-12-07): 512
channels at 128 x 128 592 -> 211 ms, at 64 x 64 118 -> 65 ms, at 16 x 16 12.5 -> 7.2 ms; 256
channels at 128 x 128 120 -> 63 ms, at 32 x 32 9.2 -> 5.8 ms; 128 channels at 64 x 64 7.5 ->
6.1 ms; NHWC alike. 64 channels at 128 x 128: 11.0 -> 11.7 ms, slower.
The error against float64 is about twice the direct convolution's (relative L2 1.1e-6 to
2.7e-6 against 1.2e-6 over inputs of scale 1 to 100, 512 channels).

In training the forward and both gradients take it too (:class:`_TrainableWinogradConv3x3`,
:func:`winograd_weight_gradient`). F(6 x 6, 3 x 3) was measured and not
taken: 512 channels at 128 x 128 in NHWC 235 -> 216 ms against this, for twice the error.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .inference_cache import InferenceCache
from .linear import cpu_has_avx512, needs_gradient

#: Whether 3 x 3 convolutions without gradients take this path. Measured faster only on a CPU
#: without AVX-512; on the AVX-512 machine the direct kernel ran at 255 GFLOP/s and a version
#: of this without the row bands was slower at 128 x 128 (docs/plugins/xdecoder.md).
WINOGRAD_INFERENCE = not cpu_has_avx512()
#: Whether such convolutions with gradients take it too (:class:`_TrainableWinogradConv3x3`:
#: the forward and both gradients by this path).
WINOGRAD_TRAINING = not cpu_has_avx512()
#: Fewest input and output channels worth it: the transforms cost per element of the maps,
#: the products they save per element grow with the channels (64 channels: slower).
MIN_CHANNELS = 128
#: Fewest input and output channels worth it with gradients. Forward and backward, batch 2,
#: NHWC, 2 Zen 3 cores, direct against this path: 128 channels at 64 x 64 83 against 103 ms,
#: at 32 x 32 24 against 28 ms; 256 channels at 32 x 32 95 against 68 ms.
MIN_TRAINING_CHANNELS = 256
#: Fewest output pixels worth it: with a few tiles the products are too thin (512 channels
#: at 8 x 8 in NCHW: 4 against 9 ms).
MIN_PIXELS = 256
#: Fewest output pixels over the batch worth it with gradients: training transforms the filter
#: twice a step (the forward's and the input gradient's) and the weight's gradient back once,
#: costs of the weight's size that the saved products repay only on enough pixels. Forward
#: and backward, 2 Zen 3 cores, batch 2, NHWC, direct against this path: 512 channels at
#: 16 x 16 91 against 199 ms (slower), at 32 x 32 312 against 231 ms; 256 channels at 32 x 32
#: 95 against 68 ms, at 128 x 128 1430 against 749 ms.
MIN_TRAINING_PIXELS = 2048
#: Tiles per band: fewer leave the products small, more leave the caches.
TILES_PER_BAND = 256

# Interpolation points 0, 1, -1, 2, -2 and infinity.
_INPUT_T = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                        dtype=torch.float64)
_FILTER = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                       dtype=torch.float64)
_OUTPUT_T = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                          [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
# The 2-d transforms of a flattened tile, as one matrix each: (36, 36) and (16, 36).
_INPUT_2D = torch.kron(_INPUT_T, _INPUT_T).float()
_OUTPUT_2D = torch.kron(_OUTPUT_T, _OUTPUT_T).float()
_FILTER_2D = torch.kron(_FILTER, _FILTER).float()  # (36, 9)


def winograd_weight(weight: Tensor) -> Tensor:
    """The filter transform ``G w G^T`` of a ``(K, C, 3, 3)`` weight: ``(36, K, C)``, as one
    ``(36, 9) x (9, K * C)`` product (34 ms for 512 x 512 channels on 2 Zen 3 cores; training
    pays it every step). Its rounding, about 3e-8 relative, is a hundredth of the
    algorithm's."""
    return (_FILTER_2D.to(weight.device, weight.dtype)
            @ weight.detach().reshape(-1, 9).t()).view(36, *weight.shape[:2])


def winograd_applies(conv: nn.Conv2d, x: Tensor, weight: Tensor,
                     bias: Optional[Tensor]) -> bool:
    """Whether ``conv`` of ``x`` with ``weight`` and ``bias`` takes Winograd's path here
    (:func:`winograd_conv2d`): a float32 3 x 3 convolution (stride 1, padding 1, no dilation
    or groups) with enough channels and pixels, on the CPU, where :data:`WINOGRAD_INFERENCE`
    (nothing needs a gradient) or :data:`WINOGRAD_TRAINING` (something does) says it is
    faster."""
    if needs_gradient(x, weight, bias):
        enabled = (WINOGRAD_TRAINING and x.dim() == 4
                   and x.shape[0] * x.shape[-2] * x.shape[-1] >= MIN_TRAINING_PIXELS)
        min_channels = MIN_TRAINING_CHANNELS
    else:
        enabled, min_channels = WINOGRAD_INFERENCE, MIN_CHANNELS
    return (enabled and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and conv.padding_mode == 'zeros'
            and min(conv.in_channels, conv.out_channels) >= min_channels
            and x.dim() == 4 and x.shape[-2] * x.shape[-1] >= MIN_PIXELS
            and x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32)


def winograd_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                    cache: Optional[InferenceCache] = None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for a 3 x 3 ``weight`` by Winograd's
    algorithm, in the input's memory format; differentiable (:class:`_TrainableWinogradConv3x3`)
    when something needs a gradient. ``cache``, the calling module's, keeps the filter
    transform of a weight without gradient between calls, keyed by the weight given (a folded
    batch norm's weights are a cached tensor themselves); a trained weight's is made anew."""
    transform = None
    if cache is not None and not needs_gradient(weight):
        transform = cache.get('winograd', (weight, ), lambda: winograd_weight(weight))
    if needs_gradient(x, weight, bias):
        return _TrainableWinogradConv3x3.apply(x, weight, bias, transform)
    return winograd_conv3x3(x, winograd_weight(weight) if transform is None else transform, bias)


class _TrainableWinogradConv3x3(torch.autograd.Function):
    """A 3 x 3 convolution (stride 1, padding 1) whose forward and gradients run by
    Winograd's algorithm (the weight's: :func:`winograd_weight_gradient`, in NCHW).

    The input's gradient of such a convolution is the same kind of convolution of the output's
    gradient, with the kernel flipped and its input and output channels swapped. 256 channels
    at 128 x 128, batch 2 (the pixel decoder's stride-4 output convolution in a training
    step), 2 Zen 3 cores: forward 346 -> 208 ms, input gradient 338 -> 183 ms.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                transform: Optional[Tensor]) -> Tensor:
        """``transform``: the weight's, when kept (a frozen weight), else ``None``."""
        ctx.save_for_backward(x, weight)
        if transform is None:
            transform = winograd_weight(weight)
        return winograd_conv3x3(x, transform, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = winograd_conv3x3(
                grad, winograd_weight(weight.flip(2, 3).transpose(0, 1)), None)
        if ctx.needs_input_grad[1]:
            grad_weight = winograd_weight_gradient(x, grad)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None


@torch.library.custom_op('openseg::winograd_conv3x3', mutates_args=())
def winograd_conv3x3(x: Tensor, weight_transform: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``F.conv2d(x, w, bias, padding=1)`` for a 3 x 3 ``w`` from its transform
    (:func:`winograd_weight`, ``(36, K, C)``): ``(N, C, H, W)`` -> ``(N, K, H, W)``, in the
    input's memory format (NCHW or channels-last). No backward of its own
    (:func:`winograd_conv2d` is the differentiable form).

    One operator for torch's FLOP counter, which counts it as the direct convolution
    (:func:`flop_formulas`)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return _nchw(x.contiguous(), weight_transform, bias)
    return _nhwc(x, weight_transform, bias)


@winograd_conv3x3.register_fake
def _(x: Tensor, weight_transform: Tensor, bias: Optional[Tensor]) -> Tensor:
    out = x.new_empty(x.shape[0], weight_transform.shape[1], *x.shape[2:])
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _bands(height: int, width: int):
    """Per band of tile rows: its first tile row, its tile rows, the input rows it reads
    (``lo:hi``) and the zero rows above and below them."""
    tiles_wide = -(-width // 4)
    rows = max(1, TILES_PER_BAND // tiles_wide)
    for t0 in range(0, -(-height // 4), rows):
        r = min(rows, -(-height // 4) - t0)
        top = 4 * t0 - 1  # the first input row the band's tiles read (padding 1)
        lo, hi = max(top, 0), min(top + 4 * r + 2, height)
        yield t0, r, lo, hi, lo - top, top + 4 * r + 2 - hi


def _nchw_input_tiles(image: Tensor, t_in: Tensor, r: int, lo: int, hi: int, pad_top: int,
                      pad_bottom: int) -> Tensor:
    """One band's transformed input tiles ``B^T d B``: ``(36, C, r * tiles_wide)`` from an
    image's ``(C, H, W)`` map (the band's rows ``lo:hi``, zero-padded as :func:`_bands`
    says)."""
    channels, width = image.shape[0], image.shape[-1]
    tiles_wide = -(-width // 4)
    band = F.pad(image[:, lo:hi], (1, 4 * tiles_wide + 1 - width, pad_top, pad_bottom))
    band_w = band.shape[-1]
    tiles = band.as_strided((6, 6, channels, r, tiles_wide),
                            (band_w, 1, band.shape[-2] * band_w, 4 * band_w, 4))
    return (t_in @ tiles.reshape(36, -1)).view(36, channels, r * tiles_wide)


def _nchw(x: Tensor, u: Tensor, bias: Optional[Tensor]) -> Tensor:
    n_images, channels, height, width = x.shape
    out_channels = u.shape[1]
    tiles_wide = -(-width // 4)
    t_in, t_out = _INPUT_2D.to(x.device), _OUTPUT_2D.to(x.device)
    out = x.new_empty(n_images, out_channels, height, width)
    for n in range(n_images):
        for t0, r, lo, hi, pad_top, pad_bottom in _bands(height, width):
            v = _nchw_input_tiles(x[n], t_in, r, lo, hi, pad_top, pad_bottom)
            m = torch.bmm(u, v)  # (36, K, tiles)
            y = (t_out @ m.view(36, -1)).view(4, 4, out_channels, r, tiles_wide)
            y = y.permute(2, 3, 0, 4, 1).reshape(out_channels, 4 * r, 4 * tiles_wide)
            rows = min(4 * r, height - 4 * t0)
            _store(out[n, :, 4 * t0:4 * t0 + rows], y[:, :rows, :width],
                   None if bias is None else bias.view(-1, 1, 1))
    return out


@torch.library.custom_op('openseg::winograd_weight_gradient', mutates_args=())
def winograd_weight_gradient(x: Tensor, grad: Tensor) -> Tensor:
    """The weight's gradient ``(K, C, 3, 3)`` of a 3 x 3 convolution (stride 1, padding 1) of
    ``x (N, C, H, W)`` whose output has the gradient ``grad (N, K, H, W)``, by the same
    algorithm: the forward is ``Y = A^T [sum_c U_kc * V_c] A`` per tile with ``U = G w G^T``,
    so ``dU_kc = sum over tiles of (A dY_k A^T) * V_c`` (36 products ``(K, tiles) x (tiles,
    C)``, as many multiplications as the forward's) and ``dw = G^T dU G``.

    Batch 2, NCHW, 2 Zen 3 cores, against torch's direct backward: 256 channels at 128 x 128
    241 against 521 ms, 512 channels 725 against 1817 ms, 256 at 32 x 32 25 against 49 ms.
    Relative error against float64 1.9e-6 to 2.6e-6 (the direct backward's 0.8e-6 to
    3.2e-6). One operator for torch's FLOP counter, which counts it as the direct backward
    (:func:`flop_formulas`)."""
    x, grad = x.contiguous(), grad.contiguous()
    n_images, channels, height, width = x.shape
    out_channels = grad.shape[1]
    tiles_wide = -(-width // 4)
    t_in, t_out = _INPUT_2D.to(x.device), _OUTPUT_2D.to(x.device)
    du = x.new_zeros(36, out_channels, channels)
    for n in range(n_images):
        for t0, r, lo, hi, pad_top, pad_bottom in _bands(height, width):
            v = _nchw_input_tiles(x[n], t_in, r, lo, hi, pad_top, pad_bottom)
            rows = min(4 * r, height - 4 * t0)
            # The band's output gradient in whole 4 x 4 tiles: outputs past the map's edge
            # do not exist, so their gradient is zero.
            g = F.pad(grad[n, :, 4 * t0:4 * t0 + rows],
                      (0, 4 * tiles_wide - width, 0, 4 * r - rows))
            g = g.view(out_channels, r, 4, tiles_wide, 4).permute(2, 4, 0, 1, 3)
            m = (t_out.t() @ g.reshape(16, -1)).view(36, out_channels, r * tiles_wide)
            du.baddbmm_(m, v.transpose(1, 2))
    return (_FILTER_2D.to(x.device).t() @ du.view(36, -1)).t().reshape(
        out_channels, channels, 3, 3)


@winograd_weight_gradient.register_fake
def _(x: Tensor, grad: Tensor) -> Tensor:
    return x.new_empty(grad.shape[1], x.shape[1], 3, 3)


def _nhwc(x: Tensor, u: Tensor, bias: Optional[Tensor]) -> Tensor:
    n_images, channels, height, width = x.shape
    out_channels = u.shape[1]
    tiles_wide = -(-width // 4)
    t_in, t_out = _INPUT_2D.to(x.device), _OUTPUT_2D.to(x.device)
    pixels = x.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous
    # Channels-last, not a permuted view: autograd refuses a custom function's view output
    # when a later layer modifies it in place (a ReLU).
    result = torch.empty(n_images, out_channels, height, width, dtype=x.dtype,
                         device=x.device, memory_format=torch.channels_last)
    out = result.permute(0, 2, 3, 1)  # (N, H, W, K)
    u_t = u.transpose(1, 2)  # (36, C, K)
    for n in range(n_images):
        for t0, r, lo, hi, pad_top, pad_bottom in _bands(height, width):
            band = F.pad(pixels[n, lo:hi],
                         (0, 0, 1, 4 * tiles_wide + 1 - width, pad_top, pad_bottom))
            band_w = band.shape[1]
            tiles = band.as_strided((6, 6, r, tiles_wide, channels),
                                    (band_w * channels, channels, 4 * band_w * channels,
                                     4 * channels, 1))
            v = (t_in @ tiles.reshape(36, -1)).view(36, r * tiles_wide, channels)
            m = torch.bmm(v, u_t)  # (36, tiles, K)
            y = (t_out @ m.view(36, -1)).view(4, 4, r, tiles_wide, out_channels)
            y = y.permute(2, 0, 3, 1, 4)  # (r, 4, tiles_wide, 4, K)
            rows = min(4 * r, height - 4 * t0)
            if rows == 4 * r and width == 4 * tiles_wide:
                # Whole tiles: stored through a tiled view of the output, in one pass
                # (reshaping first would copy the band once more).
                _store(out[n, 4 * t0:4 * t0 + rows].view(r, 4, tiles_wide, 4, out_channels),
                       y, bias)
            else:
                y = y.reshape(4 * r, 4 * tiles_wide, out_channels)
                _store(out[n, 4 * t0:4 * t0 + rows], y[:rows, :width], bias)
    return result


def _store(dst: Tensor, y: Tensor, bias: Optional[Tensor]) -> None:
    """``dst = y + bias`` (bias broadcast to ``y``), written in place."""
    if bias is None:
        dst.copy_(y)
    else:
        torch.add(y, bias, out=dst)


def flop_formulas() -> dict:
    """FLOP formulas, for torch's ``FlopCounterMode(custom_mapping=...)``: the operator
    counted as the direct convolution it replaces, as counters count cuDNN's Winograd."""

    def direct_convolution(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(out_shape) * x_shape[1] * 9

    def direct_weight_gradient(x_shape, grad_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(grad_shape) * x_shape[1] * 9

    return {torch.ops.openseg.winograd_conv3x3: direct_convolution,
            torch.ops.openseg.winograd_weight_gradient: direct_weight_gradient}

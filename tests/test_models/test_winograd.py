"""3 x 3 convolutions by Winograd's F(4 x 4, 3 x 3) (``layers/winograd.py``)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from openseg_core.models.layers import (FoldedConv2d, convert_conv2d, flop_formulas,
                                        fold_batch_norm, winograd)

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(autouse=True)
def winograd_on(monkeypatch):
    """The path on whatever CPU runs the tests (it is chosen by CPU capability), for the
    tests' 128-channel convolutions in training too."""
    monkeypatch.setattr(winograd, 'WINOGRAD_INFERENCE', True)
    monkeypatch.setattr(winograd, 'WINOGRAD_TRAINING', True)
    monkeypatch.setattr(winograd, 'MIN_TRAINING_CHANNELS', 128)


class _Calls(TorchDispatchMode):
    """The operators torch runs."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func._overloadpacket)
        return func(*args, **(kwargs or {}))


def _conv(channels=128, out_channels=136, padding=1, **kwargs) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(channels, out_channels, 3, padding=padding, **kwargs)


def _relative_error(out, expected):
    return ((out.double() - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('size', [(19, 23), (20, 24)])
def test_outputs_are_the_convolution_s_at_float_precision(channels_last, bias, size,
                                                          monkeypatch):
    # A few tiles a band, so that the maps span several bands: 19 x 23 (neither a multiple
    # of 4) with partial tiles at the bottom and right edges, 20 x 24 with whole tiles only
    # (stored through a tiled view of the output in NHWC).
    monkeypatch.setattr(winograd, 'TILES_PER_BAND', 12)
    conv = _conv(bias=bias)
    x = torch.randn(2, 128, *size) * 3 + 1
    expected = F.conv2d(x.double(), conv.weight.double(),
                        None if conv.bias is None else conv.bias.double(), padding=1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fast = convert_conv2d(conv).to(memory_format=fmt)
    with torch.no_grad(), _Calls() as calls:
        out = fast(x.contiguous(memory_format=fmt))
    assert torch.ops.openseg.winograd_conv3x3 in calls.ops
    assert torch.ops.aten.convolution not in calls.ops
    assert out.shape == (2, 136, *size)
    assert out.is_contiguous(memory_format=fmt)
    # The direct convolution's error here is about 1e-6; F(4 x 4, 3 x 3)'s about twice that.
    assert _relative_error(out, expected) < 1e-5


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('trained', ['all', 'weight', 'bias'])
@pytest.mark.parametrize('size', [(19, 23), (20, 24)])
def test_gradients_are_the_convolution_s(channels_last, trained, size, monkeypatch):
    """Training: the output and the input's and weight's gradients by Winograd's algorithm,
    over several bands, with partial edge tiles (19 x 23) and without (20 x 24). 'bias' is
    a frozen weight with a trainable bias (BitFit)."""
    monkeypatch.setattr(winograd, 'TILES_PER_BAND', 12)
    monkeypatch.setattr(winograd, 'MIN_TRAINING_PIXELS', 2 * 19 * 23)
    conv = _conv()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.randn(2, 128, *size) * 3 + 1).contiguous(memory_format=fmt)
    grad = torch.randn(2, 136, *size)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, conv.weight, conv.bias))
    F.conv2d(x64, w64, b64, padding=1).backward(grad.double())
    fast = convert_conv2d(conv).to(memory_format=fmt)
    fast.weight.requires_grad_(trained != 'bias')
    x.requires_grad_(trained == 'all')
    with _Calls() as calls:
        out = fast(x)
        out.backward(grad.contiguous(memory_format=fmt))
    # Forward and input gradient; the weight's gradient is products of its own.
    assert calls.ops.count(torch.ops.openseg.winograd_conv3x3) == 1 + (trained == 'all')
    assert torch.ops.aten.convolution not in calls.ops
    assert torch.ops.aten.convolution_backward not in calls.ops
    assert out.is_contiguous(memory_format=fmt)
    assert _relative_error(out, F.conv2d(x64, w64, b64, padding=1)) < 1e-5
    assert _relative_error(fast.bias.grad, b64.grad) < 1e-5
    if trained != 'bias':
        assert _relative_error(fast.weight.grad, w64.grad) < 1e-5
    if trained == 'all':
        assert _relative_error(x.grad, x64.grad) < 1e-5


def test_other_kernels_and_small_maps_take_the_direct_convolution():
    x = torch.randn(1, 128, 16, 16)
    trained = convert_conv2d(_conv())  # 256 pixels: fewer than MIN_TRAINING_PIXELS
    others = [convert_conv2d(_conv(stride=2)), convert_conv2d(_conv(dilation=2, padding=2)),
              convert_conv2d(_conv(groups=2)), convert_conv2d(_conv(channels=64))]
    with _Calls() as calls:
        trained(x).sum().backward()
        with torch.no_grad():
            for conv in others:
                conv(x[:, :conv.in_channels])
            convert_conv2d(_conv())(x[..., :8, :8])  # too few pixels
    assert torch.ops.openseg.winograd_conv3x3 not in calls.ops
    assert trained.weight.grad is not None


def test_training_takes_the_direct_convolution_below_its_channel_floor(monkeypatch):
    monkeypatch.setattr(winograd, 'MIN_TRAINING_CHANNELS', 256)
    conv = convert_conv2d(_conv())  # 128 -> 136 channels
    with _Calls() as calls:
        conv(torch.randn(2, 128, 40, 40)).sum().backward()
        with torch.no_grad():
            conv(torch.randn(2, 128, 40, 40))
    assert calls.ops.count(torch.ops.openseg.winograd_conv3x3) == 1  # the no-grad call
    assert torch.ops.aten.convolution_backward in calls.ops


def test_training_keeps_the_direct_convolution_where_winograd_training_is_off(monkeypatch):
    monkeypatch.setattr(winograd, 'WINOGRAD_TRAINING', False)
    conv = convert_conv2d(_conv())
    with _Calls() as calls:
        conv(torch.randn(2, 128, 40, 40)).sum().backward()
        with torch.no_grad():
            conv(torch.randn(2, 128, 40, 40))
    assert calls.ops.count(torch.ops.openseg.winograd_conv3x3) == 1  # the no-grad call


def test_changed_weights_and_folded_norms_are_transformed_again():
    """The filter transform is kept between calls; an optimiser step, a loaded checkpoint or
    a batch norm's new statistics must not leave a stale one."""
    x = torch.randn(1, 128, 16, 16)
    block = nn.Sequential(_conv(out_channels=128), nn.BatchNorm2d(128))
    fold_batch_norm(block, '0', '1')
    assert type(block[0]) is FoldedConv2d
    block.eval()
    conv, norm = block

    def error():
        expected = F.batch_norm(
            F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1),
            norm.running_mean.double(), norm.running_var.double(), norm.weight.double(),
            norm.bias.double(), eps=norm.eps)
        return _relative_error(block(x), expected)

    with torch.no_grad():
        assert error() < 1e-5
        conv.weight.mul_(-2)  # in place, as an optimiser step
        assert error() < 1e-5
        norm.running_var.fill_(4.0)
        assert error() < 1e-5
        block.load_state_dict({k: torch.rand_like(v) + 0.5 if v.is_floating_point() else v
                               for k, v in block.state_dict().items()})
        assert error() < 1e-5


def test_flop_counter_counts_the_direct_convolution():
    """The benchmark's roofline line divides the model's FLOPs by its time: the cheaper
    algorithm must show as a faster rate, not as less work."""
    x = torch.randn(1, 128, 20, 20)
    counts = []
    for conv in (_conv(), convert_conv2d(_conv())):
        with torch.no_grad():
            conv(x)  # the filter transform, once
        with torch.no_grad(), FlopCounterMode(display=False,
                                              custom_mapping=flop_formulas()) as counter:
            conv(x)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 2 * 136 * 20 * 20 * 128 * 9


def test_flop_counter_counts_a_training_step_as_the_direct_convolution_s(monkeypatch):
    monkeypatch.setattr(winograd, 'MIN_TRAINING_PIXELS', 1)
    x = torch.randn(2, 128, 20, 20, requires_grad=True)
    counts = []
    for conv in (_conv(), convert_conv2d(_conv())):
        with FlopCounterMode(display=False, custom_mapping=flop_formulas()) as counter:
            conv(x).sum().backward()
        counts.append(counter.get_total_flops())
    # Forward, input gradient and weight gradient, each the direct convolution's; Winograd's
    # path also transforms the filter twice, (36, 9) x (9, K * C) products torch counts.
    direct = 3 * 2 * 2 * 136 * 20 * 20 * 128 * 9
    assert counts[0] == direct
    assert counts[1] == direct + 2 * 2 * 36 * 9 * 136 * 128


def test_a_trained_output_can_be_modified_in_place():
    """A ReLU(inplace=True) after the convolution: autograd refuses a custom function's
    output that is a view."""
    conv = convert_conv2d(_conv()).to(memory_format=torch.channels_last)
    x = torch.randn(2, 128, 40, 40).contiguous(memory_format=torch.channels_last)
    with _Calls() as calls:
        out = nn.ReLU(inplace=True)(conv(x))
        out.sum().backward()
    assert torch.ops.openseg.winograd_conv3x3 in calls.ops
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.grad is not None

"""Spatial convolutions that train in NCHW where that backward is the faster one."""
import pytest
import torch
from mmengine.model import initialize
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from openseg_core.models.layers import (FastConv2d, FoldedBatchNorm2d, FoldedConv2d,
                                        convert_conv2d, fast_conv, fold_batch_norm)

pytestmark = pytest.mark.usefixtures('single_thread')


class _ConvolutionLayouts(TorchDispatchMode):
    """Whether each convolution torch runs gets an NCHW (contiguous) input."""

    def __init__(self):
        super().__init__()
        self.nchw = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.nchw.append(args[0].is_contiguous())
        return func(*args, **(kwargs or {}))


def _channels_last_conv(kernel_size: int) -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, kernel_size, padding=kernel_size // 2)
    return conv.to(memory_format=torch.channels_last)


@pytest.mark.parametrize('nhwc_training', [False, True])
def test_values_gradients_and_output_layout_are_the_plain_convolution_s(
        nhwc_training, monkeypatch):
    monkeypatch.setattr(fast_conv, 'NHWC_SPATIAL_TRAINING', nhwc_training)
    plain = _channels_last_conv(3)
    layout = convert_conv2d(_channels_last_conv(3))
    assert type(layout) is FastConv2d
    x = torch.randn(2, 8, 9, 7).contiguous(memory_format=torch.channels_last)
    outputs, grads = [], []
    for conv in (plain, layout):
        x_grad = x.clone().requires_grad_(True)
        with _ConvolutionLayouts() as layouts:
            out = conv(x_grad)
            out.square().sum().backward()
        outputs.append(out)
        grads.append((x_grad.grad, conv.weight.grad, conv.bias.grad))
    # The next layers (norms, 1 x 1 convolutions) get the model's layout either way.
    assert outputs[1].is_contiguous(memory_format=torch.channels_last)
    assert layouts.nchw == [not nhwc_training]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads[1], grads[0]):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4)


def test_pointwise_kernels_and_inference_keep_nhwc(monkeypatch):
    monkeypatch.setattr(fast_conv, 'NHWC_SPATIAL_TRAINING', False)
    x = torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    pointwise = convert_conv2d(_channels_last_conv(1))
    spatial = convert_conv2d(_channels_last_conv(3))
    with _ConvolutionLayouts() as layouts:
        pointwise(x.requires_grad_(True))
        with torch.no_grad():
            spatial(x)
    assert layouts.nchw == [False, False]


def test_mmengine_initialisers_still_find_the_converted_convolutions():
    """mmengine matches ``layer='Conv2d'`` against a module's class and its direct bases: a
    converted convolution left out would keep torch's default initialisation."""
    block = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3))
    fold_batch_norm(block, '0', '1')
    convert_conv2d(block)
    assert [type(m) for m in block] == [FoldedConv2d, FoldedBatchNorm2d, FastConv2d]
    initialize(block, dict(type='Constant', layer='Conv2d', val=0.5, bias=0.25))
    for conv in (block[0], block[2]):
        assert torch.all(conv.weight == 0.5) and torch.all(conv.bias == 0.25)


def test_mmcv_s_convolution_wrapper_is_converted_too():
    """mmdet's pixel decoders build their mask-feature convolution as mmcv's ``Conv2d``
    (X-Decoder's 512-channel 3 x 3 at stride 4: a fifth of its pixel decoder's time)."""
    from mmcv.cnn import Conv2d as MMCVConv2d
    block = nn.Sequential(MMCVConv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1))
    x = torch.randn(1, 4, 5, 5)
    expected = block(x)
    convert_conv2d(block)
    assert [type(m) for m in block] == [FastConv2d, FastConv2d]
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize('groups, stride', [(1, 1), (8, 1), (8, 2)], ids=['dense', 'depthwise',
                                                                         'strided'])
@pytest.mark.parametrize('activation', ['relu', 'gelu'])
def test_the_activation_is_fused_into_the_convolution_at_inference_only(groups, stride,
                                                                        activation):
    from torch.utils.flop_counter import FlopCounterMode

    from openseg_core.models.layers import conv2d_activation, flop_formulas
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 5, stride=stride, padding=2, groups=groups).eval()
    conv.to(memory_format=torch.channels_last)
    x = torch.randn(1, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    function = {'relu': torch.relu, 'gelu': nn.functional.gelu}[activation]
    expected = function(conv(x))
    with torch.no_grad(), _ConvolutionLayouts() as plain_convolutions, \
            FlopCounterMode(display=False, custom_mapping=flop_formulas()) as flops:
        out = conv2d_activation(conv, x, activation)
    assert not plain_convolutions.nchw  # the fused operator, not aten's convolution
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with FlopCounterMode(display=False) as plain_flops:
        conv(x)
    assert flops.get_total_flops() == plain_flops.get_total_flops()
    # With gradients: the module and torch's function, which autograd can differentiate.
    x.requires_grad_(True)
    conv2d_activation(conv, x, activation).sum().backward()
    assert x.grad is not None

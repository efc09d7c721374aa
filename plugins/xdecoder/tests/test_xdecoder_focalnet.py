"""FocalNet's blocks at inference: the MLPs as oneDNN inner products and, on channels-last
maps, whole blocks with their element-wise steps fused into the products: timm's values."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from openseg_core.models.layers import flop_formulas
from openseg_xdecoder.models.focalnet import FocalNet

pytestmark = pytest.mark.usefixtures('single_thread')


def _backbone(**kwargs) -> FocalNet:
    torch.manual_seed(0)
    backbone = FocalNet(embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0, **kwargs).eval()
    # Layer scales far from their 1e-4 start, so that folding them into the products shows.
    for name, param in backbone.named_parameters():
        if name.endswith('gamma'):
            param.data.uniform_(0.2, 1.5)
    return backbone


def _op_counts(prof) -> dict:
    return {e.key: e.count for e in prof.key_averages()}


@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
@pytest.mark.parametrize('use_post_norm', [True, False], ids=['post_norm', 'pre_norm'])
def test_inference_blocks_give_timms_outputs_and_layout(channels_last, use_post_norm):
    backbone = _backbone(use_post_norm=use_post_norm)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    backbone.to(memory_format=fmt)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=fmt)
    expected = backbone(x)  # with gradients: timm's own modules
    with torch.no_grad(), torch.profiler.profile() as prof:
        outputs = backbone(x)
    counts = _op_counts(prof)
    # timm's LayerNorm2d leaves channels-last maps whatever the input's layout, so every
    # block fuses: per block the five 1 x 1 products (f, the gated h, proj + residual, the
    # MLP's two) and the three focal levels' convolutions with their GELU.
    assert counts.get('mkldnn::_linear_pointwise') == 5 * 4
    assert counts.get('mkldnn::_convolution_pointwise') == 3 * 4
    for out, exp in zip(outputs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
        assert out.stride() == exp.stride()  # the layout timm's blocks leave


def test_fused_blocks_follow_changed_weights_and_count_the_same_flops():
    backbone = _backbone().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        backbone(x)  # the folded weights are made and kept
        for name, param in backbone.named_parameters():
            if name.endswith(('gamma', 'modulation.h.weight', 'mlp.fc2.bias')):
                param.mul_(1.5)
        with FlopCounterMode(display=False, custom_mapping=flop_formulas()) as fused:
            outputs = backbone(x)
    with FlopCounterMode(display=False) as plain:
        expected = backbone(x)
    for out, exp in zip(outputs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
    # The fused operators count as the convolutions and products they replace.
    assert fused.get_total_flops() == pytest.approx(plain.get_total_flops(), rel=1e-3)

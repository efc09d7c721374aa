"""FocalNet's MLPs at inference as oneDNN inner products: timm's values."""
import pytest
import torch

from openseg_xdecoder.models.focalnet import FocalNet

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_inference_mlps_give_timms_outputs_and_layout(channels_last):
    torch.manual_seed(0)
    backbone = FocalNet(embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0).eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    backbone.to(memory_format=fmt)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=fmt)
    expected = backbone(x)  # with gradients: timm's own modules
    with torch.no_grad(), torch.profiler.profile() as prof:
        outputs = backbone(x)
    products = sum(e.count for e in prof.key_averages() if e.key == 'mkldnn::_linear_pointwise')
    assert products == 2 * 4  # two per block
    for out, exp in zip(outputs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
        assert out.stride() == exp.stride()  # the layout timm's blocks leave

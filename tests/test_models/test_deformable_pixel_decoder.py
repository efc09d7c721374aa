"""The converted deformable pixel decoder equals mmdet's and keeps NHWC maps NHWC."""
import pytest
import torch
from mmdet.models.layers import MSDeformAttnPixelDecoder
from mmengine.config import Config
from torch.utils._python_dispatch import TorchDispatchMode

from openseg_core.models.layers import FastMSDeformAttnPixelDecoder, convert_pixel_decoder
from openseg_core.plugins import resolve_config

pytestmark = pytest.mark.usefixtures('single_thread')
PARTS = 'openseg_core::_base_/models/tiny_shapes_parts.py'


def _decoder() -> MSDeformAttnPixelDecoder:
    torch.manual_seed(0)
    cfg = Config.fromfile(resolve_config(PARTS)).tiny_pixel_decoder
    cfg.pop('type')
    decoder = MSDeformAttnPixelDecoder(**cfg).eval()
    decoder.init_weights()
    return decoder


def _feats(batch: int, channels_last: bool):
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(batch, c, 64 // s, 48 // s, generator=gen)
             for c, s in zip((16, 32, 64, 128), (1, 2, 4, 8))]
    if channels_last:
        feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    return feats


@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('channels_last', [False, True])
def test_converted_decoder_equals_mmdet(batch, channels_last):
    decoder = _decoder()
    if channels_last:
        decoder.to(memory_format=torch.channels_last)
    feats = _feats(batch, channels_last)
    with torch.no_grad():
        expected_mask, expected_outs = decoder(feats)
        keys = list(decoder.state_dict())
        convert_pixel_decoder(decoder)
        assert type(decoder) is FastMSDeformAttnPixelDecoder
        assert list(decoder.state_dict()) == keys
        mask, outs = decoder(feats)
    torch.testing.assert_close(mask, expected_mask, rtol=1e-5, atol=1e-5)
    assert len(outs) == len(expected_outs)
    for got, expected in zip(outs, expected_outs):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


class _UpsampleLayouts(TorchDispatchMode):
    """Records whether each bilinear upsampling returned an NHWC tensor."""

    def __init__(self):
        super().__init__()
        self.nhwc = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket is torch.ops.aten.upsample_bilinear2d:
            self.nhwc.append(out.is_contiguous(memory_format=torch.channels_last))
        return out


@pytest.mark.parametrize('convert', [True, pytest.param(False, marks=pytest.mark.xfail(
    strict=True, reason="mmdet's own decoder: the NCHW copy this conversion removes"))])
def test_nhwc_inputs_are_upsampled_in_nhwc(convert):
    """With one NHWC image, mmdet's reshaped encoder output makes ``F.interpolate`` return an
    NCHW copy of the finest map, which is then added to an NHWC map (docs/reference_model.md);
    the converted decoder upsamples NHWC to NHWC."""
    decoder = _decoder().to(memory_format=torch.channels_last)
    if convert:
        convert_pixel_decoder(decoder)
    layouts = _UpsampleLayouts()
    with torch.no_grad(), layouts:
        mask, outs = decoder(_feats(1, channels_last=True))
    assert layouts.nhwc and all(layouts.nhwc)
    assert all(out.is_contiguous(memory_format=torch.channels_last) for out in [mask, *outs])


def test_training_still_has_gradients():
    decoder = convert_pixel_decoder(_decoder()).train()
    mask, outs = decoder(_feats(2, channels_last=False))
    (mask.sum() + sum(o.sum() for o in outs)).backward()
    assert decoder.input_convs[0].conv.weight.grad.abs().sum() > 0
    assert decoder.encoder.layers[0].self_attn.sampling_offsets.weight.grad is not None

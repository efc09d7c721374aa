"""The backbone's windows and its stride groups (the official wiring at SD v1's shapes)."""
import torch

from openseg_odise.models import DiffusionBackbone
from openseg_odise.models.backbones.diffusion_backbone import TINY_BACKBONE


def test_windows_cover_the_image_and_shift_the_last_one_inside():
    boxes = DiffusionBackbone.windows(1024, 1408, 512)
    assert boxes == [(y, x, y + 512, x + 512) for y in (0, 512) for x in (0, 512, 896)]
    assert DiffusionBackbone.windows(512, 512, 512) == [(0, 0, 512, 512)]
    assert DiffusionBackbone.windows(128, 192, 128) == [(0, 0, 128, 128), (0, 64, 128, 192)]


def test_sd_v1_maps_are_summed_per_stride_as_the_official_wiring():
    with torch.device('meta'):
        backbone = DiffusionBackbone(extractor=dict(unet='sd-v1', vae='sd-v1',
                                                    text_encoder='sd-v1'))
    # maps: enc5, enc7, unet2, unet5, unet8, unet11, dec2, dec5
    assert backbone.levels == [(4, [0, 7]), (8, [1, 5, 6]), (16, [4]), (32, [2, 3])]
    assert backbone.out_channels == (512,) * 4
    assert [p.conv1.in_channels for p in backbone.feature_projections] == [
        512, 512, 2560, 1920, 960, 640, 512, 512]
    assert backbone.feature_projections[2].conv3.out_channels == 512
    assert backbone.feature_projections[2].conv2.in_channels == 128  # bottleneck 128


def test_overlapping_windows_are_averaged():
    torch.manual_seed(0)
    backbone = DiffusionBackbone(**dict(TINY_BACKBONE, window_size=64)).eval()
    image = torch.rand(1, 3, 64, 96)  # windows x 0-64 and 32-96
    with torch.no_grad():
        maps = backbone(image)
        left = backbone(image[..., :64])
        right = backbone(image[..., 32:])
    assert [tuple(m.shape) for m in maps] == [(1, 32, 64 // s, 96 // s) for s in (4, 8, 16, 32)]
    for whole, a, b, stride in zip(maps, left, right, (4, 8, 16, 32)):
        one, two = 32 // stride, 64 // stride
        torch.testing.assert_close(whole[..., :one], a[..., :one])
        torch.testing.assert_close(whole[..., one:two], (a[..., one:] + b[..., :one]) / 2)
        torch.testing.assert_close(whole[..., two:], b[..., one:])
    backbone.window_batch = 4  # both windows in one pass: the same maps (up to the float
    with torch.no_grad():     # rounding of other batch sizes, which GroupNorm over a 1 x 1
        batched = backbone(image)  # UNet map of this tiny input amplifies)
    for a, b in zip(maps, batched):
        assert (a - b).norm() / a.norm() < 1e-2

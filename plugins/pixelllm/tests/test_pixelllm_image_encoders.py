"""ImageEncoders: several encoders read one image, each at its own normalisation and scale."""
import pytest
import torch
import torch.nn.functional as F

from openseg_core.models.backbones.open_clip_image_backbone import TINY_RN
from openseg_pixelllm.models import ImageEncoders

pytestmark = pytest.mark.usefixtures('single_thread')

CLIP = dict(type='OpenCLIPImageBackbone', **TINY_RN)  # maps at strides 4-32: 32-256 channels


def test_scale_factor_resizes_the_image_for_that_encoder_alone():
    torch.manual_seed(0)
    encoders = ImageEncoders(dict(
        big=dict(backbone=CLIP, out_indices=(2, 3), scale_factor=2.0),
        plain=dict(backbone=CLIP, out_indices=(1,)))).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = encoders(images)
        upsampled = F.interpolate(images, scale_factor=2.0, mode='bilinear',
                                  align_corners=False)
        direct = encoders.encoders['big'](upsampled)
    # stride 16 of the 128 px view: the same 8 x 8 grid as stride 8 of the 64 px image
    assert maps['big'].shape == (2, 128 + 256, 8, 8)
    assert maps['plain'].shape == (2, 64, 8, 8)
    torch.testing.assert_close(maps['big'][:, :128], direct[2])
    assert maps['all'].shape == (2, 128 + 256 + 64, 8, 8)


def test_a_non_positive_scale_factor_is_refused():
    with pytest.raises(ValueError, match='scale_factor must be positive'):
        ImageEncoders(dict(clip=dict(backbone=CLIP, scale_factor=0)))

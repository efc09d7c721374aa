import pytest
import torch

from openseg_core.models.backbones import OpenCLIPImageBackbone
from openseg_core.models.backbones.open_clip_image_backbone import TINY_RN

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def tower():
    torch.manual_seed(0)
    return OpenCLIPImageBackbone(**TINY_RN).eval()


def full_clip_checkpoint(path, seed=1):
    """A whole open_clip CLIP's state dict (image and text towers), as open_clip saves it."""
    import open_clip
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(embed_dim=TINY_RN['embed_dim'], vision_cfg=TINY_RN['vision_cfg'],
                                 text_cfg=dict(width=16, heads=2, layers=1))
    state = model.state_dict()
    state['logit_scale'] = torch.tensor(3.0)
    torch.save(state, path)
    return state


def test_stages_have_the_resnet_strides_and_channels(tower):
    feats = tower(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(tower.out_channels, (4, 8, 16, 32))]
    assert tower.out_channels == (32, 64, 128, 256)


def test_whole_image_region_is_clips_image_embedding(tower):
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        last = tower(images)[-1]
        regions = tower.embed_regions(last, torch.ones(2, 1, *last.shape[-2:]))
        # open_clip's own forward: stem, stages, attention pooling.
        expected = tower.visual(images)
    torch.testing.assert_close(regions[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_region_embedding_ignores_features_outside_the_mask(tower):
    last = torch.randn(1, 256, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, 1:3] = 1
    changed = last.clone()
    changed[..., 2:, :] = torch.randn(1, 256, 2, 4)
    with torch.no_grad():
        torch.testing.assert_close(tower.embed_regions(last, mask),
                                   tower.embed_regions(changed, mask))
        assert not torch.allclose(tower.embed_regions(last, torch.ones(1, 1, 4, 4)),
                                  tower.embed_regions(changed, torch.ones(1, 1, 4, 4)))


def test_empty_region_falls_back_to_the_whole_image(tower):
    last = torch.randn(1, 256, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(tower.embed_regions(last, torch.zeros(1, 1, 2, 2)),
                                   tower.embed_regions(last, torch.ones(1, 1, 2, 2)))


def test_loads_the_image_tower_of_a_full_clip_checkpoint_and_keeps_it_out_of_checkpoints(
        tmp_path):
    state = full_clip_checkpoint(tmp_path / 'clip.pt')
    tower = OpenCLIPImageBackbone(**dict(TINY_RN, pretrained=str(tmp_path / 'clip.pt'),
                                         frozen=True))
    for key, value in tower.visual.state_dict().items():
        torch.testing.assert_close(value, state['visual.' + key])
    assert float(tower.logit_scale) == 3.0
    assert not any(p.requires_grad for p in tower.parameters())
    saved = tower.state_dict()
    assert not any(k.startswith('visual.') for k in saved), 'frozen pretrained tower saved'


def test_refuses_a_checkpoint_of_another_tower(tmp_path):
    full_clip_checkpoint(tmp_path / 'clip.pt')
    with pytest.raises(ValueError, match=r'clip.pt: not a checkpoint of this image tower'):
        OpenCLIPImageBackbone(**dict(TINY_RN, vision_cfg=dict(TINY_RN['vision_cfg'], width=16),
                                     pretrained=str(tmp_path / 'clip.pt')))


def test_refuses_a_vit_tower():
    with pytest.raises(ValueError, match='ViT image tower; OpenCLIPImageBackbone needs a '
                                         'convolutional one'):
        OpenCLIPImageBackbone(model_name='ViT-B-16')


def test_crop_of_the_whole_image_at_the_towers_size_is_clips_image_embedding(tower):
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        crop = tower.embed_boxes(images, torch.tensor([[[0.0, 0.0, 64.0, 64.0]]]), scale=1.0)
        torch.testing.assert_close(crop[:, 0], tower.visual(images), rtol=1e-4, atol=1e-5)


def test_crop_is_a_square_around_the_box_and_sees_nothing_else(tower):
    images = torch.randn(1, 3, 128, 128)
    boxes = torch.tensor([[[40.0, 50.0, 60.0, 60.0], [0.0, 0.0, 128.0, 128.0]]])
    changed = images.clone()
    # The first crop is the square of side 1.3 x 20 = 26 around (50, 55): x 37-63, y 42-68.
    changed[..., 70:, :] = torch.randn(1, 3, 58, 128)
    changed[..., :, :35] = torch.randn(1, 3, 128, 35)
    with torch.no_grad():
        before, after = tower.embed_boxes(images, boxes), tower.embed_boxes(changed, boxes)
    assert before.shape == (1, 2, 16)
    torch.testing.assert_close(before[:, 0], after[:, 0])
    assert not torch.allclose(before[:, 1], after[:, 1])


def test_masked_crop_sees_only_its_mask(tower):
    images = torch.randn(1, 3, 64, 64)
    boxes = torch.tensor([[[16.0, 16.0, 48.0, 48.0], [16.0, 16.0, 48.0, 48.0]]])
    masks = torch.zeros(1, 2, 64, 64)
    masks[0, 0, 20:40, 20:40] = 1
    masks[0, 1] = 1
    changed = images.clone()
    changed[..., 42:48, 42:48] = torch.randn(1, 3, 6, 6)  # inside both boxes, outside mask 0
    with torch.no_grad():
        before = tower.embed_boxes(images, boxes, masks=masks)
        after = tower.embed_boxes(changed, boxes, masks=masks)
        unmasked = tower.embed_boxes(images, boxes[:, 1:])
    torch.testing.assert_close(before[:, 0], after[:, 0])
    assert not torch.allclose(before[:, 1], after[:, 1])
    # A mask covering everything is the plain crop.
    torch.testing.assert_close(before[:, 1], unmasked[:, 0])

import math

import pytest
import torch

from openseg_core.models import CLIPRegionEnsemble, Vocabulary


def ensemble_by_hand(learned_logits, clip_probs, alphas):
    """The FC-CLIP / ODISE formula on python floats: learned softmax over the classes (the
    "no object" logit left out), geometric mix, renormalised, scaled by 1 - p(no object)."""
    classes = learned_logits[:-1]
    learned = [math.exp(v) / sum(math.exp(u) for u in classes) for v in classes]
    no_object = math.exp(learned_logits[-1]) / sum(math.exp(u) for u in learned_logits)
    mixed = [p ** (1 - a) * c ** a for p, c, a in zip(learned, clip_probs, alphas)]
    return [m / sum(mixed) * (1 - no_object) for m in mixed] + [no_object]


def test_hand_computed_case_with_a_seen_and_an_unseen_class():
    ensemble = CLIPRegionEnsemble(seen_classes=('circle',), alpha_seen=0.4, alpha_unseen=0.8)
    vocabulary = Vocabulary(('circle', 'star'))
    learned_logits = [2.0, 0.5, -1.0]
    # CLIP embeddings chosen so that the region's similarities are 0.6 and 0.8, scale 10.
    region = torch.tensor([[[0.6, 0.8]]])
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clip = [math.exp(10 * 0.6), math.exp(10 * 0.8)]
    clip_probs = [c / sum(clip) for c in clip]
    out = ensemble(torch.tensor([[learned_logits]]), region, classes,
                   torch.tensor(math.log(10.0)), torch.tensor([[True]]), vocabulary)
    expected = ensemble_by_hand(learned_logits, clip_probs, [0.4, 0.8])
    torch.testing.assert_close(out.exp()[0, 0], torch.tensor(expected), rtol=1e-5, atol=1e-6)
    # The learned classifier prefers "circle"; CLIP, trusted on the unseen "star", flips it.
    assert learned_logits[0] > learned_logits[1] and expected[1] > expected[0]


def test_alpha_zero_is_the_learned_classifier_and_one_is_clip():
    vocabulary = Vocabulary(('a', 'b', 'c'))
    logits, region = torch.randn(1, 4, 4), torch.randn(1, 4, 8)
    classes = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    args = (region, classes, torch.tensor(2.0), torch.ones(1, 4, dtype=torch.bool), vocabulary)
    learned = CLIPRegionEnsemble(alpha_seen=0.0, alpha_unseen=0.0)(logits, *args)
    torch.testing.assert_close(learned.exp(), logits.softmax(-1), rtol=1e-5, atol=1e-6)
    clip_only = CLIPRegionEnsemble(alpha_seen=1.0, alpha_unseen=1.0)(logits, *args).exp()
    clip_probs = (2.0 ** 0 * math.e ** 2.0 * torch.nn.functional.normalize(region, dim=-1)
                  @ classes.t()).softmax(-1)
    torch.testing.assert_close(clip_only[..., :-1] / clip_only[..., :-1].sum(-1, keepdim=True),
                               clip_probs, rtol=1e-5, atol=1e-6)


def test_regions_are_the_masks_above_the_threshold_at_clips_resolution():
    ensemble = CLIPRegionEnsemble()
    mask_logits = torch.full((1, 2, 16, 16), -5.0)
    mask_logits[0, 0, :8, :8] = 5.0
    regions = ensemble.regions(mask_logits, (4, 4))
    assert regions.shape == (1, 2, 4, 4)
    assert regions[0, 0, :2, :2].all() and regions[0, 0].sum() == 4 and regions[0, 1].sum() == 0


@pytest.mark.parametrize('alpha', [-0.1, 1.5])
def test_refuses_weights_outside_zero_one(alpha):
    with pytest.raises(ValueError, match=r'alpha_unseen must lie in \[0, 1\]'):
        CLIPRegionEnsemble(alpha_unseen=alpha)


def test_crop_regions_are_the_boxes_of_the_masks_in_input_pixels():
    from openseg_core.models.backbones import OpenCLIPImageBackbone
    from openseg_core.models.backbones.open_clip_image_backbone import TINY_RN
    torch.manual_seed(0)
    tower = OpenCLIPImageBackbone(**TINY_RN).eval()
    images = torch.randn(1, 3, 64, 64)
    mask_logits = torch.full((1, 2, 16, 16), -5.0)
    mask_logits[0, 0, 2:6, 4:12] = 5.0
    with torch.no_grad():
        embeds, valid = CLIPRegionEnsemble(region='crop', crop_scale=1.5).embed(
            tower, images, tower(images)[-1], mask_logits)
        # Mask cells x 4-11, y 2-5 at stride 4: pixels x 16-48, y 8-24.
        expected = tower.embed_boxes(images, torch.tensor([[[16.0, 8.0, 48.0, 24.0]]]), 1.5)
    assert valid.tolist() == [[True, False]]
    torch.testing.assert_close(embeds[:, :1], expected)

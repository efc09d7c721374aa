"""The implicit captioner: it starts as the empty caption, and it alone learns, through the
frozen UNet."""
import pytest
import torch

from openseg_core.models.backbones.mask_clip import TINY_VIT
from openseg_odise.models import DiffusionBackbone
from openseg_odise.models.backbones.diffusion_backbone import TINY_BACKBONE


@pytest.fixture(scope='module')
def backbone():
    torch.manual_seed(0)
    model = DiffusionBackbone(**TINY_BACKBONE, captioner=dict(
        image_encoder=dict(type='MaskCLIP', **dict(TINY_VIT, frozen=True))))
    model.init_weights()
    return model


def test_it_starts_as_the_empty_caption(backbone):
    images = torch.rand(2, 3, 64, 64)
    cond, time = backbone.captioner(images, backbone.extractor.empty_caption)
    torch.testing.assert_close(cond, backbone.extractor.empty_caption.expand(2, -1, -1))
    torch.testing.assert_close(time, torch.zeros(2, backbone.extractor.time_embed_dim))
    assert backbone.captioner.alpha_cond.shape == (1,) + tuple(
        backbone.extractor.empty_caption.shape[1:])
    # Hence the backbone's features are those of the empty caption.
    with torch.no_grad():
        with_captioner = backbone(images)
        captioner, backbone.captioner = backbone.captioner, None
        without = backbone(images)
        backbone.captioner = captioner
    for a, b in zip(with_captioner, without):
        torch.testing.assert_close(a, b)


def test_only_the_captioner_and_projections_receive_gradients(backbone):
    backbone.train()
    with torch.no_grad():  # open the gates so that the projections are on the path too
        backbone.captioner.alpha_cond.fill_(0.5)
        backbone.captioner.alpha_cond_time_embed.fill_(0.5)
    backbone.zero_grad()
    sum(m.square().mean() for m in backbone(torch.rand(2, 3, 64, 64))).backward()
    extractor, clip = backbone.extractor, backbone.captioner.image_encoder
    for frozen in (extractor.unet, extractor.vae, clip):
        assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    assert not extractor.unet.training and not clip.training  # frozen parts stay in eval
    captioner = backbone.captioner
    for name in ('alpha_cond', 'alpha_cond_time_embed', 'clip_project.linear.weight',
                 'clip_project.positional_embedding', 'time_embed_project.linear.weight'):
        grad = captioner.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in backbone.feature_projections.parameters())
    with torch.no_grad():
        backbone.captioner.alpha_cond.zero_()
        backbone.captioner.alpha_cond_time_embed.zero_()
    backbone.eval()


def test_gate_gradients_at_zero_flow_through_the_unet(backbone):
    """At initialisation (gates 0) the gates still get a gradient: it can only come through
    the frozen UNet's activations, the conditioning's only consumer."""
    backbone.train()
    backbone.zero_grad()
    sum(m.mean() for m in backbone(torch.rand(1, 3, 64, 64))[1:]).backward()
    assert backbone.captioner.alpha_cond.grad.abs().sum() > 0
    assert backbone.captioner.alpha_cond_time_embed.grad.abs().sum() > 0
    assert backbone.captioner.clip_project.linear.weight.grad.abs().sum() == 0  # tanh(0) = 0
    backbone.eval()

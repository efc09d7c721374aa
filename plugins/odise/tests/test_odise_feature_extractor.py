"""The diffusion feature extractor: noising against the scheduler, the wiring of every map
at SD v1's shapes, early stopping and pruning, loading from local files."""
import pytest
import torch

from openseg_core.models.base import SOURCE_KEY
from openseg_odise.models import StableDiffusionFeatureExtractor
from openseg_odise.models.backbones.diffusion_backbone import TINY_TEXT, TINY_UNET, TINY_VAE

SD_V1_CHANNELS = (512, 512, 2560, 1920, 960, 640, 512, 512)
SD_V1_STRIDES = (4, 8, 64, 32, 16, 8, 8, 4)


def tiny(**kwargs):
    torch.manual_seed(0)
    args = dict(unet=TINY_UNET, vae=TINY_VAE, text_encoder=TINY_TEXT, noise_size=(8, 8))
    return StableDiffusionFeatureExtractor(**dict(args, **kwargs)).eval()


def test_noising_follows_the_schedulers_alpha_bar():
    from diffusers import DDPMScheduler
    reference = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule='scaled_linear')
    latent = torch.randn(2, 4, 8, 8)
    for t in (0, 500):
        extractor = tiny(timestep=t)
        noisy, steps = extractor.noised(latent)
        abar = reference.alphas_cumprod[t]
        expected = abar.sqrt() * latent + (1 - abar).sqrt() * extractor.noise
        torch.testing.assert_close(noisy, expected)
        assert steps.tolist() == [t, t]
    # t = 0 still adds sqrt(1 - abar_0) = sqrt(beta_0) ~ 0.029 of the noise (official).
    assert (1 - reference.alphas_cumprod[0]).sqrt().item() == pytest.approx(0.0292, abs=1e-4)
    # One fixed noise (seed 42), bicubically resized to other latent sizes.
    assert torch.equal(tiny().noise, tiny().noise)
    noisy, _ = tiny().noised(torch.zeros(1, 4, 16, 16))
    assert noisy.shape == (1, 4, 16, 16) and noisy.abs().sum() > 0
    clean, _ = tiny(timestep=-1).noised(latent)
    assert torch.equal(clean, latent)


def test_sd_v1_wiring_channels_and_strides():
    """Every map of an SD v1-shaped extractor at 512 px, shapes computed on the meta device
    (no weights in memory): channels 2560 / 1920 / 960 / 640 from the UNet, 512 from the VAE."""
    with torch.device('meta'):
        extractor = StableDiffusionFeatureExtractor(unet='sd-v1', vae='sd-v1',
                                                    text_encoder='sd-v1')
        maps = extractor(torch.zeros(1, 3, 512, 512))
    assert extractor.feature_channels == SD_V1_CHANNELS
    assert extractor.feature_strides == SD_V1_STRIDES
    assert extractor.empty_caption.shape == (1, 77, 768)
    assert extractor.time_embed_dim == 1280
    assert [tuple(m.shape) for m in maps] == [(1, c, 512 // s, 512 // s)
                                              for c, s in zip(SD_V1_CHANNELS, SD_V1_STRIDES)]


def test_maps_match_the_declared_channels_and_strides():
    extractor = tiny()
    with torch.no_grad():
        maps = extractor(torch.rand(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [
        (2, c, 64 // s, 64 // s) for c, s in zip(extractor.feature_channels,
                                                 extractor.feature_strides)]
    assert all(m.dtype == torch.float32 for m in maps)


def test_stopping_early_and_pruning_change_nothing_but_the_cost():
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = tiny(stop_early=False)(images)
        early = tiny(stop_early=True)(images)
        pruned_model = tiny(prune=True)
        pruned = pruned_model(images)
    for a, b, c in zip(full, early, pruned):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, c)
    sizes = [sum(p.numel() for p in part.parameters())
             for part in (tiny().unet, pruned_model.unet)]
    assert sizes[1] < sizes[0]
    decoder = pruned_model.vae.decoder
    assert not list(decoder.conv_out.parameters()) and not list(decoder.up_blocks[2].parameters())


def test_indices_must_follow_the_network():
    with pytest.raises(ValueError, match='unet_block_indices must increase'):
        tiny(unet_block_indices=(5, 2))


def test_loads_a_diffusers_directory_and_keeps_it_out_of_checkpoints(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel
    source = tiny()
    source.unet.save_pretrained(tmp_path / 'unet')
    source.vae.save_pretrained(tmp_path / 'vae')
    torch.manual_seed(1)
    CLIPTextModel(CLIPTextConfig(**TINY_TEXT)).save_pretrained(tmp_path / 'text_encoder')
    torch.manual_seed(2)  # the loaded weights must not depend on the random initialisation
    loaded = tiny(pretrained=str(tmp_path))
    for a, b in zip(source.unet.state_dict().values(), loaded.unet.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(loaded.empty_caption, source.empty_caption)
    state = loaded.state_dict()
    assert {k for k in state if k.endswith(SOURCE_KEY)} == {
        f'unet.{SOURCE_KEY}', f'vae.{SOURCE_KEY}', f'conditioning.{SOURCE_KEY}'}
    assert not any(k.startswith(('unet.conv', 'vae.encoder')) for k in state)
    assert all(not p.requires_grad for p in loaded.parameters())


def test_missing_weights_are_named(tmp_path):
    (tmp_path / 'unet').mkdir()
    with pytest.raises(FileNotFoundError, match='Stable Diffusion weights not found') as error:
        tiny(pretrained=str(tmp_path))
    message = str(error.value)
    for part in ('unet', 'vae', 'text_encoder'):
        assert str(tmp_path / part / 'config.json') in message

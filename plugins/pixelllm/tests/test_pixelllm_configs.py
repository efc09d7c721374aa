"""Every PixelLLM config loads by its ``pixelllm::`` name; the tiny ones build, the
paper-scale ones have the released sizes (built on the meta device) and, without their
weights, fail in one line naming every missing file."""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.testing import config_names

TINY = [n for n in config_names('pixelllm') if '_tiny_' in n]
PAPER = [n for n in config_names('pixelllm') if '_paper_' in n]


def test_the_plugin_ships_every_task():
    assert {n.split('::')[1] for n in TINY} == {
        'pixelllm_tiny_shapes_trace.py', 'pixelllm_tiny_shapes_referring.py',
        'pixelllm_tiny_shapes_loc_caption.py', 'pixelllm_tiny_shapes_densecap.py'}
    assert len(PAPER) == 2


@pytest.mark.parametrize('name', TINY)
def test_tiny_config_builds(name):
    model = MODELS.build(load_config(name).model)
    assert type(model).__name__ == 'PixelLLM'
    # the small CLIP's stride-8 + 16 maps (128 + 256 channels); location-conditioned
    # captioning reads its stride-16 + 32 maps (256 + 512) of the image at 256 px
    channels = 768 if name.endswith('_loc_caption.py') else 384
    assert model.image_encoder.out_channels == channels and model.language_model.d_model == 64
    # the shapes CLIP stays frozen and out of the optimizer
    assert not any(p.requires_grad for p in model.image_encoder.parameters())


@pytest.mark.parametrize('name', PAPER)
def test_paper_scale_config_without_weights_fails_in_one_line(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        MODELS.build(load_config(name).model)
    message = str(err.value)
    assert '\n' not in message
    for path in ('eva02_large_patch14_clip_336.safetensors', 'sam-vit-huge/config.json',
                 'flan-t5-xl/config.json', 'flan-t5-xl/tokenizer.json'):
        assert path in message, message


def test_paper_scale_model_has_the_released_sizes_on_the_meta_device():
    cfg = load_config('pixelllm::pixelllm_paper_refseg.py')
    model_cfg = cfg.model
    for encoder in model_cfg.image_encoder.encoders.values():
        encoder.backbone.pretrained = None
    model_cfg.prompt_encoder.pretrained = None
    model_cfg.mask_head.pretrained = None
    model_cfg.mask_head.frozen = True
    model_cfg.language_model.pretrained = None
    model_cfg.language_model.config = cfg.flan_t5_xl
    model_cfg.tokenizer = 'shapes'
    with torch.device('meta'):
        model = MODELS.build(model_cfg)

    def count(module, trainable=None):
        return sum(p.numel() for p in module.parameters()
                   if trainable is None or p.requires_grad == trainable)

    assert model.language_model.d_model == 2048
    t5_base = count(model.language_model, trainable=False)
    # Flan-T5-XL, frozen (2.85 B; transformers 5 ties the output layer to the embedding)
    assert 2.75e9 < t5_base < 2.9e9
    # LoRA rank 32 on q and v: encoder self (24 x 2), decoder self + cross (24 x 4) projections
    assert count(model.language_model, trainable=True) == (24 * 2 + 24 * 4) * 32 * (2048 + 2048)
    eva, sam = model.image_encoder.encoders['eva'], model.image_encoder.encoders['sam']
    assert 3.0e8 < count(eva, trainable=True) < 3.1e8  # EVA02-L, trained
    assert 6.3e8 < count(sam, trainable=False) < 6.4e8  # SAM ViT-H image encoder, frozen
    assert model.image_encoder.out_channels == 1024 + 256
    extractor = model.prompt_extractor
    assert len(extractor.transformer.layers) == 6 and extractor.output_tokens.shape == (32, 512)
    assert extractor.token_projs[0].out_features == 1024 and extractor.out_channels == 2048
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    assert not any(p.requires_grad for p in model.mask_head.decoder.parameters())
    assert all(p.requires_grad for p in model.mask_head.adapter.parameters())
    assert model.trace_head.num_points == 2
    assert model.test_cfg['beam_size'] == 3

"""Every APE config loads by its ``ape::`` name and builds; the paper-scale one has APE-D's
sizes (built on the meta device: 1.1 billion parameters)."""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.testing import config_names

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.mark.parametrize('name', config_names('ape'))
def test_config_builds(name):
    cfg = load_config(name)
    with torch.device('meta' if 'paper' in name else 'cpu'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'APE'


def test_paper_scale_config_has_ape_d_sizes():
    with torch.device('meta'):
        model = MODELS.build(load_config('ape::ape_vitl_paper.py').model)
    assert model.num_queries == 900 and model.num_feature_levels == 5
    assert len(model.encoder.layers) == 6 and len(model.decoder.layers) == 6
    assert model.embed_dims == 256 and model.prompt_dims == 1024
    fusion = model.encoder.vl_layers[0]
    assert fusion.attn.v_proj.out_features == 2048 and fusion.attn.num_heads == 8
    assert model.encoder.layers[0].ffn.layers[0][0].out_features == 2048
    assert model.encoder.layers[0].self_attn.num_levels == 5
    assert len(model.cls_branches) == 7 and len(model.cls_branches_ambiguous) == 1
    assert model.postprocessor.topk == 300
    vit = model.backbone.net
    assert len(vit.blocks) == 24 and vit.embed_dim == 1024
    assert vit.patch_embed.patch_size == (16, 16)
    tower = model.text_encoder.tower
    assert tower.width == 1280 and len(tower.transformer.resblocks) == 32
    params = sum(p.numel() for name, p in model.named_parameters()
                 if not name.startswith('text_encoder'))
    # Official APE-D without its text tower, loss constants, RoPE tables and the heads it
    # saves twice: 380,314,222 (tests/data/official_ape_d_keys.json), less the 1,024 values
    # of the class token's position that its ViT never uses.
    assert params == 380_313_198

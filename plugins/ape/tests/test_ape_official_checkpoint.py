"""A state dict with every official APE-D name and shape (``data/official_ape_d_keys.json``)
converts onto the paper-scale config with nothing missing but the text tower and nothing
unexpected, each tensor where it means the same thing."""
import json
from pathlib import Path

import pytest
import torch

from openseg_ape.converters.official import convert_official
from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS

HERE = Path(__file__).resolve().parent
# 1.1 billion parameters: the backbone and the text tower stay on the meta device; every
# other tensor is real, so the spot checks below compare values.
HUGE = ('model_vision.backbone.net.blocks.', 'model_vision.model_language.')


@pytest.fixture(scope='module')
def official_state():
    shapes = json.loads((HERE / 'data' / 'official_ape_d_keys.json').read_text())
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if key.startswith(HUGE):
            state[key] = torch.empty(shape, device='meta')
        elif key.endswith('name_prompt_fusion_feature'):
            state[key] = torch.zeros(shape)
        else:
            state[key] = torch.randn(shape, generator=gen)
    # The official code saves the decoder's heads twice (the same modules).
    for key in list(state):
        if key.startswith('model_vision.transformer.decoder.class_embed.') or \
                key.startswith('model_vision.transformer.decoder.bbox_embed.'):
            state[key] = state['model_vision.' + key[len('model_vision.transformer.decoder.'):]]
    return state


@pytest.fixture(scope='module')
def model():
    with torch.device('meta'):
        return MODELS.build(load_config('ape::ape_vitl_paper.py').model)


def test_converted_checkpoint_fits_the_paper_config(model, official_state):
    converted = convert_official(dict(model=official_state))
    result = model.load_state_dict(converted, strict=False, assign=True)
    assert not result.unexpected_keys
    # The frozen text tower is skipped, not loaded: it comes from text_encoder.pretrained.
    assert result.missing_keys and all(k.startswith('text_encoder.tower.')
                                       for k in result.missing_keys)
    assert not any(k.startswith('text_encoder') for k in converted)
    official = 'model_vision.'
    pairs = {
        'level_embed': 'transformer.level_embeds',
        'cls_branches.3.bias_lang': 'class_embed.3.bias_lang',
        'cls_branches.6.weight': 'class_embed.6.weight',
        'reg_branches.2.4.weight': 'bbox_embed.2.layers.2.weight',
        'reg_branches_ambiguous.0.2.bias': 'transformer.decoder.bbox_embed_ambiguous.0.layers.1.bias',
        'cls_branches_ambiguous.0.bias': 'transformer.decoder.class_embed_ambiguous.0.bias',
        'encoder.vl_layers.4.gamma_l': 'transformer.encoder.vl_layers.4.b_attn.gamma_l',
        'encoder.vl_layers.1.attn.values_l_proj.weight':
            'transformer.encoder.vl_layers.1.b_attn.attn.values_l_proj.weight',
        'encoder.layers.5.self_attn.sampling_offsets.bias':
            'transformer.encoder.layers.5.attentions.0.sampling_offsets.bias',
        'decoder.layers.2.cross_attn.value_proj.weight':
            'transformer.decoder.layers.2.attentions.1.value_proj.weight',
        'decoder.layers.2.self_attn.attn.in_proj_weight':
            'transformer.decoder.layers.2.attentions.0.attn.in_proj_weight',
        'decoder.layers.0.ffn.layers.1.weight': 'transformer.decoder.layers.0.ffns.0.layers.1.weight',
        'memory_trans_fc.weight': 'transformer.enc_output.weight',
        'pix_trans_norm.bias': 'transformer.pix_trans_norm.bias',
        'lateral_conv.gn.weight': 'lateral_conv.norm.weight',
        'output_conv.conv.weight': 'output_conv.weight',
        'mask_embed.4.weight': 'mask_embed.layers.2.weight',
        'neck.convs.3.gn.bias': 'neck.convs.3.norm.bias',
        'backbone.simfp_2.4.norm.weight': 'backbone.simfp_2.4.norm.weight',
        'backbone.net.patch_embed.proj.weight': 'backbone.net.patch_embed.proj.weight',
    }
    for ours, theirs in pairs.items():
        torch.testing.assert_close(converted[ours], official_state[official + theirs])
    # The class token's position is dropped from the absolute position table.
    torch.testing.assert_close(converted['backbone.net.pos_embed'],
                               official_state[official + 'backbone.net.pos_embed'][:, 1:])
    renamed = {'attn.q_proj.bias': 'attn.q_bias', 'attn.norm.weight': 'attn.inner_attn_ln.weight',
               'mlp.fc1_g.weight': 'mlp.w1.weight', 'mlp.fc2.bias': 'mlp.w3.bias'}
    for ours, theirs in renamed.items():
        assert f'backbone.net.blocks.23.{ours}' in converted
        assert official + f'backbone.net.blocks.23.{theirs}' in official_state


def test_a_key_without_a_rule_is_named(official_state):
    with pytest.raises(KeyError, match='vqa_head'):
        convert_official({'model_vision.vqa_head.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match="lacks the 'model_vision.' prefix"):
        convert_official({'backbone.weight': torch.zeros(1)})


def test_duplicated_heads_and_the_zero_token_are_checked(official_state):
    state = dict(official_state)
    key = 'model_vision.transformer.decoder.class_embed.2.bias0'
    state[key] = state[key] + 1
    with pytest.raises(ValueError, match='saves these heads twice'):
        convert_official(state)
    state = dict(official_state)
    state['model_vision.name_prompt_fusion_feature'] = torch.ones(1, 1, 1024)
    with pytest.raises(ValueError, match='learnable'):
        convert_official(state)

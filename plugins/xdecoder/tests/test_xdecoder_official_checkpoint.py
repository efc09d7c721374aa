"""A state dict with the official X-Decoder (Focal-T) names and shapes loads into the
paper-scale config with no missing or unexpected keys once converted; unconverted, it is
refused with the conversion command."""
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from openseg_core.plugins import resolve_config
from openseg_core.registry import MODELS
from openseg_core.utils.checkpoint import CheckpointError, load_model_weights
from openseg_xdecoder.converters.official import convert_official

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope='module')
def official_state():
    shapes = json.loads((HERE / 'data' / 'official_xdecoder_focalt_keys.json').read_text())
    gen = torch.Generator().manual_seed(0)
    return {k: (torch.zeros(s, dtype=torch.bool) if k.endswith('self_attn_mask')
                else torch.randn(s, generator=gen)) for k, s in shapes.items()}


@pytest.fixture(scope='module')
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = Config.fromfile(resolve_config('xdecoder::xdecoder_focalt_paper.py'))
    model = MODELS.build(cfg.model)
    yield model
    torch.set_num_threads(threads)


def test_converted_official_checkpoint_loads_strictly(model, official_state):
    converted = convert_official(official_state)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Spot checks that tensors land where they mean the same thing.
    pred = 'sem_seg_head.predictor.'
    torch.testing.assert_close(model.query_decoder.global_query_feat.weight[0],
                               official_state[pred + 'query_feat.weight'][-1])
    torch.testing.assert_close(model.query_decoder.query_pos.weight,
                               official_state[pred + 'query_embed.weight'][:-1])
    torch.testing.assert_close(model.query_decoder.mask_embed[4].weight,
                               official_state[pred + 'mask_embed.layers.2.weight'])
    layer = model.query_decoder.decoder.layers[3]
    torch.testing.assert_close(layer.cross_attn.attn.in_proj_weight, official_state[
        pred + 'transformer_cross_attention_layers.3.multihead_attn.in_proj_weight'])
    torch.testing.assert_close(layer.norms[2].weight, official_state[
        pred + 'transformer_ffn_layers.3.norm.weight'])
    torch.testing.assert_close(model.text_encoder.tower.transformer.resblocks[11].mlp.c_fc.bias,
                               official_state[pred + 'lang_encoder.lang_encoder.resblocks.11.'
                                                     'mlp.c_fc.bias'])
    torch.testing.assert_close(model.head.caption_embed, official_state[pred + 'caping_embed'])
    torch.testing.assert_close(model.head.backbone_proj, official_state['backbone_proj'])


def test_official_checkpoint_loaded_unconverted_says_how_to_convert(model, official_state):
    with pytest.raises(ValueError, match='convert it first with `python tools/convert'):
        model.load_state_dict(dict(official_state), strict=True)


def test_openseg_loader_names_the_converter(model, official_state):
    """The tools' loader (load_from, Segmenter, demo) refuses it before loading anything and
    finds the installed converter that fits."""
    with pytest.raises(CheckpointError, match='it is an official checkpoint: convert it first '
                       'with `python tools/convert_checkpoint.py xdecoder_official'):
        load_model_weights(model, dict(model=official_state), 'xdecoder_focalt_last.pt')


def test_a_key_without_a_rule_is_named(official_state):
    bad = dict(official_state, **{'sem_seg_head.predictor.vqa_head.weight': torch.zeros(2)})
    with pytest.raises(KeyError, match='vqa_head'):
        convert_official(bad)


@torch.no_grad()
def test_token_features_reach_the_decoder_through_lang_proj(model, official_state):
    """As in the official model, every token feature of a referring phrase or a caption
    prefix is multiplied by ``lang_proj`` before the decoder reads it."""
    model.load_state_dict(convert_official(official_state), strict=True)
    model.eval()
    lang_proj = official_state['sem_seg_head.predictor.lang_encoder.lang_proj']
    seen = []
    hook = model.query_decoder.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs['text_queries']),
        with_kwargs=True)
    try:
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
        model.referring_outputs(feats, ['the dog'])
        model.test_cfg['max_caption_len'] = 1
        # The full re-run (the cached path decodes outside forward; test_xdecoder_caption_cache
        # shows both give the same logits).
        model.caption(feats, beam_size=1, cache=False)
    finally:
        hook.remove()
    encoder = model.text_encoder
    phrase = encoder(['the dog']).token_feats
    torch.testing.assert_close(seen[0], phrase @ lang_proj)
    start = torch.tensor([[encoder.start_token_id]])
    torch.testing.assert_close(seen[1], encoder.encode_ids(start) @ lang_proj)

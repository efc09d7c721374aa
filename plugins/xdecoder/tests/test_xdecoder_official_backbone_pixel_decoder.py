"""Official X-Decoder Focal-T backbone / pixel-decoder weights load into openseg's modules."""
import json
import re
from pathlib import Path

import pytest
import torch

from openseg_xdecoder.converters.official import (convert_backbone, convert_pixel_decoder,
                                                  load_backbone_state, strip_prefix)
from openseg_xdecoder.models.focalnet import FocalNet
from openseg_xdecoder.models.transformer_encoder_fpn import TransformerEncoderFPN

KEYS_FILE = Path(__file__).parent / 'data' / 'official_xdecoder_focalt_keys.json'

# Official Focal-T X-Decoder (configs/xdecoder/svlp_focalt_lang.yaml), spelled out.
FOCALT = dict(embed_dim=96, depths=(2, 2, 6, 2), focal_levels=(3, 3, 3, 3),
              focal_windows=(3, 3, 3, 3), mlp_ratio=4.0, patch_size=4, use_conv_embed=True,
              patch_norm=True, use_post_norm=True, use_post_norm_in_modulation=False,
              normalize_modulator=True, use_layerscale=True, use_dw_conv=True,
              out_indices=(0, 1, 2, 3))
PIXEL_DECODER = dict(in_channels=(96, 192, 384, 768), feat_channels=512, out_channels=512,
                     num_outs=3, num_encoder_layers=6, num_heads=8, feedforward_channels=2048,
                     dropout=0.0, norm_cfg=dict(type='GN', num_groups=32))


# Small tensors: one intra-op thread is faster, and much faster on busy shared CPUs.
pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def official_shapes():
    return json.loads(KEYS_FILE.read_text())


@pytest.fixture(scope='module')
def backbone():
    return FocalNet(drop_path_rate=0.0, **FOCALT).eval()


@pytest.fixture(scope='module')
def pixel_decoder():
    return TransformerEncoderFPN(**PIXEL_DECODER).eval()


def _random_state(shapes, prefix, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.startswith(prefix):
            state[key[len(prefix):]] = torch.randn(shape, generator=gen)
    return state


def test_keys_file_covers_the_whole_model(official_shapes):
    groups = {k.split('.')[0] if not k.startswith('sem_seg_head.') else '.'.join(k.split('.')[:2])
              for k in official_shapes}
    assert groups == {'backbone', 'backbone_proj', 'sem_seg_head.pixel_decoder',
                      'sem_seg_head.predictor'}

    def count(pattern):
        return len({m.group(1) for k in official_shapes for m in [re.match(pattern, k)] if m})
    assert count(r'^backbone\.layers\.(\d+)\.') == 4
    assert count(r'^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.') == 6
    # DEC_LAYERS 10 = 9 decoder layers + the prediction on the learnable queries.
    assert count(r'^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.') == 9
    assert count(r'^sem_seg_head\.predictor\.lang_encoder\.lang_encoder\.resblocks\.(\d+)\.') == 12
    p = 'sem_seg_head.predictor.'
    assert official_shapes[p + 'query_feat.weight'] == [101, 512]
    assert official_shapes[p + 'lang_encoder.lang_encoder.token_embedding.weight'] == [49408, 512]
    assert official_shapes[p + 'self_attn_mask'] == [1, 178, 178]


def test_backbone_converts_and_loads_strictly(official_shapes, backbone):
    official = _random_state(official_shapes, 'backbone.')
    assert len(official) == 300
    converted = convert_backbone(official)
    result = backbone.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = backbone.state_dict()
    # Linear -> 1x1 conv, and the down-sampling moved from the end of stage i to stage i+1.
    assert torch.equal(loaded['stages.2.blocks.5.modulation.f.weight'][..., 0, 0],
                       official['layers.2.blocks.5.modulation.f.weight'])
    assert torch.equal(loaded['stages.1.blocks.0.mlp.fc2.weight'][..., 0, 0],
                       official['layers.1.blocks.0.mlp.fc2.weight'])
    assert torch.equal(loaded['stages.3.downsample.proj.weight'],
                       official['layers.2.downsample.proj.weight'])
    assert torch.equal(loaded['stages.0.blocks.1.norm1_post.weight'],
                       official['layers.0.blocks.1.norm1.weight'])
    assert torch.equal(loaded['stages.0.blocks.1.ls2.gamma'], official['layers.0.blocks.1.gamma_2'])
    assert torch.equal(loaded['norm3.bias'], official['norm3.bias'])


def test_pixel_decoder_converts_and_loads_strictly(official_shapes, pixel_decoder):
    official = _random_state(official_shapes, 'sem_seg_head.pixel_decoder.')
    assert len(official) == 97
    converted = convert_pixel_decoder(official)
    result = pixel_decoder.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = pixel_decoder.state_dict()
    assert torch.equal(loaded['encoder_out_proj.conv.weight'], official['layer_4.weight'])
    assert torch.equal(loaded['output_convs.0.gn.bias'], official['layer_1.norm.bias'])
    assert torch.equal(loaded['lateral_convs.2.conv.weight'], official['adapter_3.weight'])
    assert torch.equal(loaded['encoder.layers.5.self_attn.attn.in_proj_weight'],
                       official['transformer.encoder.layers.5.self_attn.in_proj_weight'])
    assert torch.equal(loaded['encoder.layers.0.ffn.layers.1.weight'],
                       official['transformer.encoder.layers.0.linear2.weight'])


def test_unknown_official_keys_are_rejected():
    with pytest.raises(KeyError):
        convert_backbone({'layers.0.blocks.0.unknown.weight': torch.zeros(1)})
    with pytest.raises(KeyError):
        convert_pixel_decoder({'layer_1.unknown': torch.zeros(1)})
    # Classification heads are dropped, not converted.
    assert convert_backbone({'head.weight': torch.zeros(2, 2)}) == {}


def test_forward_shapes(backbone, pixel_decoder):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = backbone(x)
        assert [tuple(f.shape) for f in feats] == [(2, 96, 16, 16), (2, 192, 8, 8),
                                                   (2, 384, 4, 4), (2, 768, 2, 2)]
        mask_features, memories = pixel_decoder(list(feats))
    assert mask_features.shape == (2, 512, 16, 16)
    # Low to high resolution: strides 32, 16, 8.
    assert [tuple(m.shape) for m in memories] == [(2, 512, 2, 2), (2, 512, 4, 4), (2, 512, 8, 8)]
    # Sizes that are not multiples of 32 are padded like the official model (rounded up).
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 70, 90))
    assert [tuple(f.shape[-2:]) for f in feats] == [(18, 23), (9, 12), (5, 6), (3, 3)]


def test_memories_feed_the_core_query_decoder(backbone, pixel_decoder):
    from openseg_core.models import MaskedAttentionQueryDecoder
    c = 512
    attn = dict(embed_dims=c, num_heads=8, attn_drop=0.0, proj_drop=0.0, batch_first=True)
    layer = dict(self_attn_cfg=dict(attn),
                 cross_attn_cfg=dict(attn),
                 ffn_cfg=dict(embed_dims=c, feedforward_channels=64, num_fcs=2, ffn_drop=0.0))
    decoder = MaskedAttentionQueryDecoder(
        num_queries=3, embed_dims=c, memory_channels=c, num_feature_levels=3,
        transformer_decoder=dict(num_layers=3, layer_cfg=layer)).eval()
    with torch.no_grad():
        mask_features, memories = pixel_decoder(list(backbone(torch.randn(1, 3, 64, 64))))
        out = decoder(mask_features, memories)
    assert out.mask_logits[-1].shape == (1, 3, 16, 16)


def test_registry_and_pretrained_local_path(tmp_path, official_shapes):
    from openseg_core.registry import MODELS
    tiny = dict(embed_dim=32, depths=(1, 1, 1, 1))
    model = MODELS.build(dict(type='xdecoder.FocalNet', **tiny))
    assert isinstance(model, FocalNet)
    assert isinstance(MODELS.build(dict(type='xdecoder.TransformerEncoderFPN', **PIXEL_DECODER)),
                      TransformerEncoderFPN)

    # An official-layout checkpoint (full-model prefix) of the tiny model, from its own state
    # mapped back through the documented rules.
    reference = FocalNet(**tiny).state_dict()
    official = {}
    for key, value in reference.items():
        new = re.sub(r'^stem\.', 'patch_embed.', key)
        new = re.sub(r'^stages\.(\d+)\.downsample\.',
                     lambda m: f'layers.{int(m.group(1)) - 1}.downsample.', new)
        new = re.sub(r'^stages\.', 'layers.', new)
        new = re.sub(r'norm([12])_post\.', r'norm\1.', new)
        new = re.sub(r'ls([12])\.gamma$', r'gamma_\1', new)
        if re.search(r'(modulation\.(f|proj)|mlp\.fc[12])\.weight$', new):
            value = value[..., 0, 0]
        official['backbone.' + new] = value + 1.0
    official['sem_seg_head.predictor.class_embed'] = torch.zeros(2, 2)
    path = tmp_path / 'official.pt'
    torch.save(official, path)
    assert len(load_backbone_state(str(path))) == len(reference)

    model = FocalNet(pretrained=str(path), **tiny)
    model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key] + 1.0), key

    with pytest.raises(ValueError):
        FocalNet(pretrained='https://example.com/focalnet.pth', **tiny)
    assert strip_prefix({'a.b': 1, 'c': 2}, 'a.') == {'b': 1}

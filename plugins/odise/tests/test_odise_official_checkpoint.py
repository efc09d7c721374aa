"""A state dict with every name and shape of the official ODISE checkpoints converts into
exactly the trainable weights of the paper-scale configs (built on the meta device: shapes
only, no 1.5 B frozen weights in memory)."""
import json
from pathlib import Path

import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_odise.benchmarks.memory import _no_pretrained
from openseg_odise.converters.official import convert_official, is_official

HERE = Path(__file__).resolve().parent
OFFICIAL = json.loads((HERE / 'data' / 'official_odise_keys.json').read_text())
CONFIGS = {'odise_label_coco_50e': 'odise::odise_label_coco_paper.py',
           'odise_caption_coco_50e': 'odise::odise_caption_coco_paper.py'}


def trainable_shapes(model):
    """Names and shapes of the state dict without the frozen parts (which a model loaded
    from pretrained files leaves out of its checkpoints)."""
    frozen = []
    for name, module in model.named_modules():
        for sub in getattr(module, 'frozen_modules', {}):
            frozen.append('.'.join(p for p in (name, sub) if p) + '.')
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.startswith(tuple(frozen))}


@pytest.mark.parametrize('release', sorted(CONFIGS))
def test_every_official_key_lands_on_a_trainable_weight(release):
    cfg = load_config(CONFIGS[release])
    with torch.device('meta'):
        model = MODELS.build(_no_pretrained(cfg.model))
    official = {k: torch.empty(s, device='meta') for k, s in OFFICIAL[release].items()}
    assert is_official(official)
    converted = convert_official(dict(model=official))
    expected = trainable_shapes(model)
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected
    # 29.1 M trainable parameters, as the official model (its paper counts 28.1 M).
    assert sum(torch.Size(s).numel() for s in expected.values()) == pytest.approx(29.1e6,
                                                                                  rel=0.01)


def test_spot_checks_land_where_they_mean_the_same():
    gen = torch.Generator().manual_seed(0)
    official = {k: torch.randn(s, generator=gen) if s else torch.tensor(2.5)
                for k, s in OFFICIAL['odise_caption_coco_50e'].items()}
    out = convert_official(official)
    pred = 'sem_seg_head.predictor.'
    assert torch.equal(out['word_head.logit_scale'], official[pred + 'post_mask_embed.logit_scale'])
    assert torch.equal(out['query_decoder.mask_embed.4.weight'],
                       official[pred + 'mask_embed.layers.2.weight'])
    assert torch.equal(out['query_decoder.decoder.layers.3.norms.2.bias'],
                       official[pred + 'transformer_ffn_layers.3.norm.bias'])
    assert torch.equal(out['pixel_decoder.encoder.layers.5.norms.1.weight'],
                       official['sem_seg_head.pixel_decoder.transformer.encoder.layers.5.norm2.weight'])
    assert torch.equal(out['backbone.feature_projections.7.gn3.weight'],
                       official['backbone.feature_projections.7.0.conv3.norm.weight'])
    assert torch.equal(out['backbone.captioner.alpha_cond_time_embed'],
                       official['backbone.feature_extractor.alpha_cond_time_embed'])
    label = convert_official({k: torch.zeros(s) for k, s in
                              OFFICIAL['odise_label_coco_50e'].items()})
    assert 'head.logit_scale' in label and 'head.null_embed' in label


def test_a_key_without_a_rule_is_named():
    with pytest.raises(KeyError, match='clip_head.extra'):
        convert_official({'sem_seg_head.predictor.query_feat.weight': torch.zeros(1),
                          'clip_head.extra': torch.zeros(1)})

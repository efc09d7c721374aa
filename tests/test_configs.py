"""Every shipped config loads, passes the config check and builds its model; the paper-scale
reference model runs a forward pass."""
from pathlib import Path

import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_builds(path):
    cfg = load_config(str(path))
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_paper_scale_reference_runs_one_forward():
    cfg = load_config(str(next(p for p in CONFIGS if p.name == 'ovseg_r50_coco_panoptic.py')))
    model = MODELS.build(cfg.model).eval()
    assert model.query_decoder.num_queries == 100
    assert len(model.query_decoder.decoder.layers) == 9
    assert model.loss_module.num_points == 12544
    model.set_vocabulary([f'class {i}' for i in range(80)], [f'stuff {i}' for i in range(53)])
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128), mode='tensor')
    assert out['cls_logits'][-1].shape == (1, 100, 134)
    assert out['mask_logits'][-1].shape == (1, 100, 32, 32)

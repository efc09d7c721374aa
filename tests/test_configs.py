"""Every config of the core and of every installed plugin loads by its ``<plugin>::`` name and
passes the config check; the core's build their models; the paper-scale reference model runs
a forward pass."""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.plugins import get_plugin_manager
from openseg_core.registry import MODELS, SCOPE
from openseg_core.testing import config_names

CONFIGS = config_names(SCOPE)
PLUGIN_CONFIGS = [name for plugin in sorted(get_plugin_manager().enabled_scopes() - {SCOPE})
                  for name in config_names(plugin)]


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds(name):
    cfg = load_config(name)
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize('name', PLUGIN_CONFIGS)
def test_plugin_config_loads_with_its_bases(name):
    # Each plugin's own tests build its models; here: its scope and bases resolve.
    cfg = load_config(name)
    assert cfg.filename.endswith(name.partition('::')[2]) and 'model' in cfg


def test_paper_scale_reference_runs_one_forward():
    cfg = load_config('openseg_core::reference/ovseg_r50_coco_panoptic.py')
    model = MODELS.build(cfg.model).eval()
    assert model.query_decoder.num_queries == 100
    assert len(model.query_decoder.decoder.layers) == 9
    assert model.criterion.num_points == 12544
    model.set_vocabulary([f'class {i}' for i in range(80)], [f'stuff {i}' for i in range(53)])
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128), mode='tensor')
    assert out.cls_logits[-1].shape == (1, 100, 134)
    assert out.mask_logits[-1].shape == (1, 100, 32, 32)

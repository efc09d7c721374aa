"""The FSDP fragment for the paper-scale ODISE configs (``odise::_base_/fsdp.py``, see
docs/distributed.md): on the model built on the meta device (shapes only), its units are the
decoder and encoder layers and FSDP leaves exactly the frozen parts whole. (The strategy itself
runs in tests/test_engine/test_fsdp_strategy.py; at this scale it has not run anywhere.)"""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.engine.fsdp import FSDPPlan
from openseg_core.registry import MODELS
from openseg_odise.benchmarks.memory import _no_pretrained


@pytest.mark.parametrize('paper', ['odise_label_coco_paper.py', 'odise_caption_coco_paper.py'])
def test_fsdp_units_and_whole_frozen_parts_of_the_paper_model(paper, tmp_path):
    config = tmp_path / 'fsdp.py'
    config.write_text(f"_base_ = ['odise::{paper}', 'odise::_base_/fsdp.py']\n")
    cfg = load_config(str(config))
    assert cfg.strategy.type == 'OpenSegFSDPStrategy'
    with torch.device('meta'):
        model = MODELS.build(_no_pretrained(cfg.model))
    plan = FSDPPlan(model, cfg.strategy.wrap_blocks)
    assert plan.units == ([f'pixel_decoder.encoder.layers.{i}' for i in range(6)]
                          + [f'query_decoder.decoder.layers.{i}' for i in range(9)])
    params = dict(model.named_parameters())
    frozen = {name for name, p in params.items() if not p.requires_grad}
    scalars = {name for name, p in params.items() if p.dim() == 0}
    assert set(plan.ignored) == frozen | scalars
    # The UNet, the VAE and the CLIP towers: 1.37 B parameters whole on every GPU.
    assert any(name.startswith('backbone.extractor.unet.') for name in plan.ignored)
    assert sum(params[n].numel() for n in plan.ignored) == pytest.approx(1.371e9, rel=0.01)
    # FSDP shards the 29.1 M trainable ones (the temperature stays whole, averaged).
    sharded = sum(p.numel() for n, p in params.items() if n not in plan.ignored)
    assert sharded == pytest.approx(29.1e6, rel=0.01)
    assert set(plan.replicated) <= scalars and all(params[n].requires_grad for n in plan.replicated)

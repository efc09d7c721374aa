"""The FSDP fragment for the paper-scale PixelLLM configs (``pixelllm::_base_/fsdp.py``, see
docs/distributed.md): on the model built on the meta device (shapes only), its units are
EVA02's and T5's blocks and the two-way attention blocks that train; FSDP leaves Flan-T5-XL's
and SAM-H's frozen weights whole and manages the LoRA adapters inside T5's blocks. (The
strategy itself runs in tests/test_engine/test_fsdp_strategy.py; at this scale it has not run
anywhere.)"""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.engine.fsdp import FSDPPlan
from openseg_core.registry import MODELS


def _meta_model(cfg):
    """The paper-scale model without its pretrained files (random architecture)."""
    model_cfg = cfg.model
    for encoder in model_cfg.image_encoder.encoders.values():
        encoder.backbone.pretrained = None
    model_cfg.prompt_encoder.pretrained = None
    if 'mask_head' in model_cfg:
        model_cfg.mask_head.pretrained = None
        model_cfg.mask_head.frozen = True
    model_cfg.language_model.pretrained = None
    model_cfg.language_model.config = cfg.flan_t5_xl
    model_cfg.tokenizer = 'shapes'
    with torch.device('meta'):
        return MODELS.build(model_cfg)


@pytest.mark.parametrize('paper, adapters', [('pixelllm_paper_trace.py', 0),
                                             ('pixelllm_paper_refseg.py', 2)])
def test_fsdp_units_and_whole_frozen_parts_of_the_paper_model(paper, adapters, tmp_path):
    config = tmp_path / 'fsdp.py'
    config.write_text(f"_base_ = ['pixelllm::{paper}', 'pixelllm::_base_/fsdp.py']\n")
    cfg = load_config(str(config))
    model = _meta_model(cfg)
    plan = FSDPPlan(model, cfg.strategy.wrap_blocks)
    t5 = 'language_model.model.'
    assert plan.units == (
        [f'image_encoder.encoders.eva.vit.blocks.{i}' for i in range(24)]
        + [f'{t5}encoder.block.{i}' for i in range(24)]
        + [f'{t5}decoder.block.{i}' for i in range(24)]
        + [f'prompt_extractor.transformer.layers.{i}' for i in range(6)]
        + [f'mask_head.adapter.transformer.layers.{i}' for i in range(adapters)])
    params = dict(model.named_parameters())
    frozen = {name for name, p in params.items() if not p.requires_grad}
    assert set(plan.ignored) == frozen and not plan.replicated
    # Flan-T5-XL's and SAM-H's 3.4 B frozen parameters whole on every GPU...
    assert 3.40e9 < sum(params[n].numel() for n in plan.ignored) < 3.43e9
    # ... and the 374 M trainable ones (EVA02-L, LoRA, extractor, heads) sharded, the LoRA
    # adapters inside T5's block units.
    lora = [n for n in params if '.lora_' in n]
    assert lora and not any(n in plan.ignored for n in lora)
    assert all(n.startswith(tuple(u + '.' for u in plan.units)) for n in lora)
    sharded = sum(p.numel() for n, p in params.items() if n not in plan.ignored)
    assert 3.69e8 < sharded < 3.75e8

"""Every X-Decoder config loads by its ``xdecoder::`` name, passes the config check and
builds; the paper-scale one has the paper's sizes and runs a forward pass for every task."""
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.testing import config_names


@pytest.mark.parametrize('name', config_names('xdecoder'))
def test_config_builds(name):
    model = MODELS.build(load_config(name).model)
    assert type(model).__name__ == 'XDecoder'


def test_paper_scale_config_runs_one_forward_per_task():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config('xdecoder::xdecoder_focalt_paper.py')
        assert len(MODELS.build(cfg.model.text_encoder).templates) == 81  # official ensemble
        # 81 prompts per class through a 12-layer tower take minutes for 134 names on one
        # thread; the shapes below do not depend on the templates.
        cfg.model.text_encoder.templates = ('{}.',)
        model = MODELS.build(cfg.model).eval()
        decoder = model.query_decoder
        assert decoder.num_latent == 101 and len(decoder.decoder.layers) == 9
        assert decoder.decoder.embed_dims == 512
        tower = model.text_encoder.tower
        assert len(tower.transformer.resblocks) == 12 and tower.width == 512
        assert model.text_encoder.context_length == 77
        assert model.criterion.num_points == 12544
        model.set_vocabulary([f'class {i}' for i in range(80)], [f'stuff {i}' for i in range(53)])
        with torch.no_grad():
            feats = model.extract_feat(torch.randn(2, 3, 128, 128))
            out = model.generic_outputs(feats)
            # 100 object queries + the re-weighted global query (official numerics)
            assert out.cls_logits[-1].shape == (2, 101, 134)
            assert out.mask_logits[-1].shape == (2, 101, 32, 32)
            masks, scores = model.refer(feats, ['the dog', 'a cat on the left'])
            assert masks.shape == (2, 32, 32) and scores.shape == (2,)
            assert model.image_embeddings(feats).shape == (2, 1024)  # retrieval ensemble
            model.test_cfg['max_caption_len'] = 2
            assert len(model.caption(feats, beam_size=2)) == 2
    finally:
        torch.set_num_threads(threads)

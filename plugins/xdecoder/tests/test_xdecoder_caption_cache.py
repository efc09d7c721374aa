"""Cached caption decoding (latents once per image, keys / values of earlier tokens) gives the
captions and next-token logits of re-running the decoder on the whole prefix."""
import re

import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.models.language import generate
from openseg_core.registry import MODELS

CONFIG = 'xdecoder::xdecoder_tiny_shapes_captioning.py'
#: the official-numerics switches of xdecoder_focalt_paper.py, on the tiny model
OFFICIAL = dict(global_query='reweighted', caption_query_pos='token_and_learned',
                attn_mask_interpolation='bicubic_antialias')
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def _model(official: bool):
    cfg = load_config(CONFIG)
    cfg.model.text_encoder.pretrained = None  # random weights: nothing to load
    if official:
        cfg.model.query_decoder.update(OFFICIAL)
        cfg.model.project_text_queries = True
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # Token embeddings of CLIP's scale: logits far enough apart for argmax to be stable.
    torch.nn.init.normal_(model.text_encoder.tower.token_embedding.weight, std=1.0)
    model.test_cfg['max_caption_len'] = 8
    return model.eval()


@pytest.fixture(scope='module', params=[False, True], ids=['tiny', 'official_numerics'])
def setup(request):
    model = _model(request.param)
    gen = torch.Generator().manual_seed(1)
    inputs = torch.rand(2, 3, 64, 96, generator=gen) * 2 - 1
    with torch.no_grad():
        feats = model.extract_feat(inputs)
    # A region per image (referring captioning), at 1/4 of the input like the grounded masks.
    region = torch.zeros(2, 16, 24)
    region[0, 2:10, 3:15] = 1
    region[1, 8:, 12:] = 1
    return model, feats, region


def _recorded(model, feats, beam, region, cache):
    """Captions and, per step, the ``(N, V)`` logits of ``generate``. Random weights repeat
    one token forever; banning repeats makes every step extend the prefix with a new one."""
    step = model.caption_step_fn(feats, beam, region, cache=cache)
    logits = []

    def recording(ids, past):
        out = step(ids, past)
        logits.append(out.logits)
        return out

    start = torch.full((feats.mask_features.shape[0], 1), model.text_encoder.start_token_id)
    out = generate(recording, start, model.text_encoder.end_token_id,
                   model.test_cfg['max_caption_len'], beam_size=beam, no_repeat_ngram_size=1)
    return out.sequences, logits


@pytest.mark.parametrize('beam', [1, 3], ids=['greedy', 'beam3'])
@pytest.mark.parametrize('with_region', [False, True], ids=['image', 'region'])
def test_cached_decoding_gives_the_same_captions_and_logits(setup, beam, with_region):
    model, feats, region = setup
    region = region if with_region else None
    full, full_logits = _recorded(model, feats, beam, region, cache=False)
    cached, cached_logits = _recorded(model, feats, beam, region, cache=True)
    assert cached == full
    assert all(len(s) > 2 for s in full)  # several steps compared, not just the first
    assert len({tuple(s) for s in full}) == len(full)  # the images' captions differ
    assert len(cached_logits) == len(full_logits)
    for step, (a, b) in enumerate(zip(cached_logits, full_logits)):
        torch.testing.assert_close(a, b, **TOLERANCE, msg=f'step {step}')
    assert model.caption(feats, beam, region) == model.caption(feats, beam, region, cache=False)


def test_cached_step_matches_the_full_decoder_at_every_position(setup):
    """Teacher-forced: one fixed token sequence, fed one token at a time to the cached path,
    against one decoder pass over the whole sequence (the training-time computation)."""
    model, feats, region = setup
    ids = torch.randint(0, 49408, (2, 9), generator=torch.Generator().manual_seed(2))
    ids[:, 0] = model.text_encoder.start_token_id
    for reg in (None, region):
        with torch.no_grad():
            decoded = model.query_decoder(
                feats.mask_features, feats.memories, task='captioning',
                text_queries=model.text_queries(model.text_encoder.encode_ids(ids)),
                text_region=reg)
        table = model.text_encoder.token_embedding_table
        expected = model.head.caption_logits(decoded.text_embeds[-1], table)
        step = model.caption_step_fn(feats, 1, reg, cache=True)
        # The first call may carry a prefix of several tokens; then one token per call.
        out = step(ids[:, :3], None)
        torch.testing.assert_close(out.logits, expected[:, 2], **TOLERANCE)
        past = out.cache
        for t in range(3, ids.shape[1]):
            out = step(ids[:, t:t + 1], past)
            torch.testing.assert_close(out.logits, expected[:, t], **TOLERANCE)
            past = out.cache


def test_a_tower_without_incremental_path_is_rerun_on_the_prefix(setup, monkeypatch):
    """A text encoder that cannot encode one token at a time (e.g. open_clip's CoCa tower)
    still gets the cached decoder, with the same logits."""
    model, feats, region = setup
    full, full_logits = _recorded(model, feats, 3, region, cache=False)
    monkeypatch.setattr(type(model.text_encoder), 'supports_incremental',
                        property(lambda self: False))
    cached, cached_logits = _recorded(model, feats, 3, region, cache=True)
    assert cached == full
    for a, b in zip(cached_logits, full_logits):
        torch.testing.assert_close(a, b, **TOLERANCE)


def test_training_mode_falls_back_to_the_full_pass(setup):
    model, _, _ = setup
    assert model.query_decoder.supports_caption_cache()
    model.train()
    try:
        assert not model.query_decoder.supports_caption_cache()
    finally:
        model.eval()


def test_caption_speed_suite_reports_both_ways(capsys):
    """``tools/benchmark.py CONFIG --suite xdecoder.caption_speed`` (in-process, with the
    tool's common options)."""
    from types import SimpleNamespace

    from openseg_xdecoder.benchmarks.caption_speed import caption_speed
    args = SimpleNamespace(size=64, iters=1, warmup=0, device='cpu')
    caption_speed(load_config(CONFIG), args, ['--tokens', '4', '--beam', '2'])
    out = capsys.readouterr().out
    for way in ('cached', 'no cache'):
        assert re.search(rf'{way} +\d+\.\d tokens/s \(\d+\.\d ms\)', out), out
    assert re.search(r'cache speed-up \(no cache / cached\): \d+\.\d\dx', out), out
    assert 'same tokens: yes' in out, out
    with pytest.raises(ValueError, match='unrecognized arguments: --bogus'):
        caption_speed(load_config(CONFIG), args, ['--bogus'])

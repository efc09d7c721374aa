"""The official-numerics switches of the X-Decoder decoder, each doing what the official code
does (the measured parity with the official code is in docs/plugins/xdecoder.md)."""
import pytest
import torch
from mmengine.config import Config

from openseg_core.plugins import resolve_config
from openseg_core.registry import MODELS

OFFICIAL = dict(global_query='reweighted', referring='grounding_copies',
                caption_query_pos='token_and_learned',
                attn_mask_interpolation='bicubic_antialias')


def _model(**decoder):
    torch.manual_seed(0)
    cfg = Config.fromfile(resolve_config('xdecoder::xdecoder_tiny_shapes_generic.py'))
    cfg.model.query_decoder.update(decoder)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_vocabulary(['circle', 'square'], ['sky'])
    return model.eval()


@pytest.fixture(scope='module')
def official():
    return _model(**OFFICIAL)


@pytest.fixture(scope='module')
def feats(official):
    with torch.no_grad():
        return official.extract_feat(torch.randn(2, 3, 64, 64))


@torch.no_grad()
def test_reweighted_global_query_is_an_average_of_object_outputs(official, feats):
    out = official.query_decoder(feats.mask_features, feats.memories, task='generic')
    objects, glob = out.query_embeds[-1], out.global_embeds[-1]
    # The re-weighted global output lies in the objects' convex hull: solve for its weights
    # and check they are a distribution.
    weights = torch.linalg.lstsq(objects.transpose(1, 2), glob[..., None]).solution[..., 0]
    assert torch.allclose(weights.sum(-1), torch.ones(2), atol=1e-3)
    assert (weights > -1e-3).all()
    masks = out.mask_logits[-1]
    assert out.global_mask_logits[-1].shape == (masks.shape[0],) + masks.shape[2:]
    generic = official.generic_outputs(feats)
    assert generic.cls_logits[-1].shape[1] == objects.shape[1] + 1  # the 101st candidate


@torch.no_grad()
def test_grounding_copies_leave_the_latent_queries_as_the_generic_pass(official, feats):
    generic = official.query_decoder(feats.mask_features, feats.memories, task='generic')
    tokens = official.encode_texts(['the red square', 'a circle'])
    runs = [official.query_decoder(feats.mask_features, feats.memories, task='referring',
                                   text_queries=t, text_padding=p)
            for t, p in ((tokens['tokens'], tokens['padding']),
                         (tokens['tokens'].flip(0), tokens['padding'].flip(0)))]
    for run in runs:
        torch.testing.assert_close(run.query_embeds[-1], generic.query_embeds[-1])
        torch.testing.assert_close(run.global_embeds[-1], generic.global_embeds[-1])
        assert run.text_embeds is None and run.copy_embeds[-1].shape == \
            generic.query_embeds[-1].shape
    # The copies listen to the phrase.
    assert not torch.allclose(runs[0].copy_embeds[-1], runs[1].copy_embeds[-1])
    logits = official.referring_outputs(feats, ['the red square', 'a circle'])['logits']
    assert logits[-1].shape == (2, official.query_decoder.num_queries)


@torch.no_grad()
def test_padding_of_a_phrase_does_not_change_its_grounding(official, feats):
    alone = official.referring_outputs(feats.take(torch.tensor([0])), ['square'])
    padded = official.referring_outputs(feats, ['square', 'the large red circle on the left'])
    torch.testing.assert_close(padded['logits'][-1][:1], alone['logits'][-1], atol=1e-4,
                               rtol=1e-4)


@torch.no_grad()
def test_caption_positions_carry_the_token_features(feats):
    learned, official = _model(), _model(caption_query_pos='token_and_learned')
    text = learned.text_encoder.project(learned.text_encoder.encode_ids(
        torch.tensor([[49406, 320, 736]])))
    a = learned.query_decoder(feats.mask_features[:1], [m[:1] for m in feats.memories],
                              task='captioning', text_queries=text)
    b = official.query_decoder(feats.mask_features[:1], [m[:1] for m in feats.memories],
                               task='captioning', text_queries=text)
    # Same weights (same seed), same content; only the text positions differ.
    torch.testing.assert_close(a.query_embeds[-1], b.query_embeds[-1])
    assert not torch.allclose(a.text_embeds[-1], b.text_embeds[-1])


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="referring must be one of"):
        _model(referring='grounding')


@torch.no_grad()
def test_official_mode_trains(official):
    from openseg_core.testing.synthetic import synthetic_batch
    official.train()
    for task in ('panoptic', 'referring', 'captioning'):
        inputs, samples = synthetic_batch(task)
        losses = official.loss(inputs, samples)
        assert all(torch.isfinite(v) for v in losses.values())
    official.eval()

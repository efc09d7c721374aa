"""A prompt's embedding is its end-of-text feature (or its tokens' mean), the same whether
it is encoded alone or padded in a batch with longer prompts."""
import pytest
import torch
import torch.nn.functional as F

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')

SHORT, LONG = 'sky', 'the small red square on the left of the big blue circle'


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return MODELS.build(load_config('ape::ape_tiny_shapes.py').model).eval()


@torch.no_grad()
def test_end_of_text_feature_ignores_padding(model):
    alone = model.embed_sentences([SHORT])
    batched = model.embed_sentences([LONG, SHORT])
    torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-6)
    # It is the tower's (ln_final) feature at the end token, projected, not normalised.
    encoder = model.text_encoder
    out = encoder([LONG, SHORT])
    end = out.lengths - 1
    expected = encoder.project(out.token_feats[torch.arange(2), end])
    torch.testing.assert_close(batched, expected)
    assert not torch.allclose(batched.norm(dim=-1), torch.ones(2))
    # Padding follows the length: "sky" has 3 tokens (start, word, end).
    assert out.lengths.tolist()[1] == 3


@torch.no_grad()
def test_token_average_excludes_padding(model):
    model.prompt_reduce = 'average'
    try:
        alone = model.embed_sentences([SHORT])
        batched = model.embed_sentences([LONG, SHORT])
        torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-6)
        out = model.text_encoder([SHORT])
        torch.testing.assert_close(alone, model.text_encoder.project(out.token_feats.mean(1)))
        vocab = model.embed_vocabulary(['sky', 'grass'])
        torch.testing.assert_close(vocab[:1], F.normalize(alone, dim=-1))
    finally:
        model.prompt_reduce = 'eot'
        model._average_cache.clear()


@torch.no_grad()
def test_vocabulary_embeddings_are_cached_while_frozen(model):
    first = model.embed_vocabulary(['circle', 'square'])
    cached = model.embed_vocabulary(['circle', 'square'])
    assert model.embed_vocabulary(['circle', 'square']) is cached
    assert torch.equal(cached, first)
    torch.testing.assert_close(first, F.normalize(model.embed_sentences(['circle', 'square']),
                                                  dim=-1))

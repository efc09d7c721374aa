"""Prompt routing in the encoder: vocabulary prompts meet the image as one zero token and
keep their embeddings bit for bit; sentences are fused and updated; ``fuse_all`` is the
official rule."""
import pytest
import torch

from openseg_ape.models import PromptBatch
from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS

pytestmark = pytest.mark.usefixtures('single_thread')

WORDS = ['circle', 'square', 'sky']
SENTENCES = ['the red square on the left', 'a small blue circle']


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = MODELS.build(load_config('ape::ape_tiny_shapes.py').model)
    model.init_weights()
    return model.eval()


def _run(model, prompts, batch=2, size=64):
    meta = dict(img_shape=(size, size), batch_input_shape=(size, size))
    inputs = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.forward_prompts(model.extract_feat(inputs), prompts, [meta] * batch)


def test_vocabulary_embeddings_pass_unchanged_and_sentences_are_fused(model):
    model.routing = 'per_prompt'
    out = _run(model, PromptBatch(WORDS, SENTENCES))
    assert out.prompt_embeds.shape == (2, 5, model.prompt_dims)
    with torch.no_grad():
        vocab = model.embed_vocabulary(WORDS)
        sentences = model.embed_sentences(SENTENCES)
    for image in range(2):
        assert torch.equal(out.prompt_embeds[image, :3], vocab)  # bit-identical
        change = (out.prompt_embeds[image, 3:] - sentences).norm(dim=-1) / sentences.norm(dim=-1)
        assert (change > 1e-3).all(), change
    assert out.cls_logits[-1].shape == (2, model.num_queries, 5)


def test_vocabulary_alone_is_not_fused_and_costs_one_token(model):
    model.routing = 'per_prompt'
    out = _run(model, PromptBatch(WORDS, ()))
    with torch.no_grad():
        assert torch.equal(out.prompt_embeds, model.embed_vocabulary(WORDS))
        tokens, hidden, fuse_all = model._language_tokens(
            PromptBatch(WORDS + [f'class {i}' for i in range(500)], SENTENCES),
            torch.zeros(503, model.prompt_dims), torch.zeros(2, model.prompt_dims),
            torch.ones(2, 505, dtype=torch.bool))
    # 503 words and 2 sentences: the zero token and the two sentences.
    assert tokens.shape == (2, 3, model.prompt_dims) and hidden is None and not fuse_all
    assert not tokens[:, 0].any()


def test_official_rule_fuses_every_prompt_once_a_sentence_is_present(model):
    model.routing = 'fuse_all'
    try:
        out = _run(model, PromptBatch(WORDS, SENTENCES))
        with torch.no_grad():
            vocab = model.embed_vocabulary(WORDS)
        assert not torch.equal(out.prompt_embeds[0, :3], vocab)
        # Without sentences the official rule is the vocabulary mode too.
        out = _run(model, PromptBatch(WORDS, ()))
        assert torch.equal(out.prompt_embeds, vocab)
    finally:
        model.routing = 'per_prompt'


def test_images_fused_with_their_own_sentences_only(model):
    """An image that does not see a sentence is not fused with it: its result equals running
    it with its own prompts alone (one batch serves several referring expressions)."""
    model.routing = 'per_prompt'
    visible = torch.tensor([[True, False], [False, True]])
    both = _run(model, PromptBatch((), SENTENCES, visible=visible))
    for image in range(2):
        alone = _run(model, PromptBatch((), [SENTENCES[image]]), batch=2)
        torch.testing.assert_close(both.cls_logits[-1][image, :, image],
                                   alone.cls_logits[-1][image, :, 0], rtol=1e-4, atol=1e-4)

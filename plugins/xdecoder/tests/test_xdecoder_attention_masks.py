"""X-Decoder's self-attention rules (paper Fig. 4), checked entry by entry per task."""
import pytest
import torch

from openseg_xdecoder.models import self_attention_mask

# Two object queries (o), the global query (g), three text queries (t); 1 = may attend.
O, G = 2, 1
M = O + G


def allowed(task, num_text=0, padding=None):
    return (~self_attention_mask(task, M, num_text, padding)).int()


def test_generic_objects_see_objects_global_sees_itself():
    expected = torch.tensor([[1, 1, 0],
                             [1, 1, 0],
                             [0, 0, 1]])
    assert torch.equal(allowed('generic')[0], expected)
    assert torch.equal(allowed('retrieval')[0], expected)


def test_referring_latents_attend_text_text_attends_text_only():
    expected = torch.tensor([
        # o  o  g  t  t  t
        [1, 1, 0, 1, 1, 1],
        [1, 1, 0, 1, 1, 1],
        [0, 0, 1, 0, 0, 0],   # the global query stays text-free: retrieval embeddings
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1]])
    assert torch.equal(allowed('referring', 3)[0], expected)


def test_captioning_text_sees_itself_predecessors_and_all_latents():
    expected = torch.tensor([
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1]])
    assert torch.equal(allowed('captioning', 3)[0], expected)


def test_padding_is_blocked_as_key_and_padded_rows_see_only_themselves():
    padding = torch.tensor([[False, False, True], [False, False, False]])
    masks = allowed('captioning', 3, padding)
    assert masks.shape == (2, 6, 6)
    assert masks[0, :, 5].tolist() == [0, 0, 0, 0, 0, 1]
    assert masks[0, 5].tolist() == [0, 0, 0, 0, 0, 1]
    assert torch.equal(masks[1], allowed('captioning', 3)[0])
    assert (masks.sum(-1) > 0).all()  # no row without a key: no NaN


def test_task_and_query_mismatch_is_an_error():
    with pytest.raises(ValueError, match='unknown X-Decoder task'):
        self_attention_mask('vqa', M)
    with pytest.raises(ValueError, match='takes no text queries'):
        self_attention_mask('generic', M, 2)
    with pytest.raises(ValueError, match='needs text queries'):
        self_attention_mask('captioning', M, 0)


def test_grounding_keeps_latent_queries_apart_from_copies_and_text():
    m, n = 4, 2  # 3 objects + global, 3 copies, 2 phrase tokens (the second padded)
    mask = self_attention_mask('grounding', m, n, torch.tensor([[False, True]]))[0]
    latent, copies, text = slice(0, m), slice(m, 2 * m - 1), slice(2 * m - 1, 2 * m - 1 + n)
    assert mask.shape == (2 * m - 1 + n,) * 2
    assert torch.equal(mask[latent, latent], self_attention_mask('generic', m)[0])
    assert mask[latent, m:].all() and mask[m:, latent].all()
    assert not mask[copies, copies].any() and not mask[copies, 2 * m - 1].any()
    assert not mask[text, copies][0].any()  # the real phrase token sees the copies
    assert mask[:2 * m - 1, -1].all()  # the padded token is nobody's key...
    assert not mask[-1, -1]  # ...and attends only itself

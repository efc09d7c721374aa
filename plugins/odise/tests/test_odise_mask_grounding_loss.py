"""The grounding loss against a case computed by hand."""
import math

import pytest
import torch

from openseg_odise.models import MaskGroundingLoss


def _case():
    # Image 0: one mask on word direction x, one on y. Image 1: both masks on y.
    masks = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    words = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # caption 0: "x", caption 1: "y"
    return masks, words, torch.ones(2, 1, dtype=torch.bool)


def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_softmax_over_queries_by_hand():
    masks, words, valid = _case()
    loss = MaskGroundingLoss(softmax_over='queries')(masks, words, valid, torch.tensor(1.0))
    # g[m, n] = mean_k sum_q softmax_q(s) s with s = cos (scale 1):
    a = math.e / (1 + math.e)   # image 0 with either caption: softmax over (1, 0)
    g = [[a, a], [0.0, 1.0]]    # image 1: (0, 0) for caption 0, (1, 1) for caption 1
    captions = (_ce([g[0][0], g[1][0]], 0) + _ce([g[0][1], g[1][1]], 1)) / 2
    images = (_ce(g[0], 0) + _ce(g[1], 1)) / 2
    assert loss.item() == pytest.approx(0.5 * (captions + images), abs=1e-6)


def test_softmax_over_words_is_the_papers_form():
    masks = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    loss = MaskGroundingLoss(softmax_over='words')
    s = torch.einsum('qd,kd->qk', masks[0], words[0]) * 2.0
    expected = (s.softmax(-1) * s).sum(0).mean()  # sum over masks of p(z_i, C_word)_k s_ik
    g = loss.similarity(masks, words, torch.tensor(2.0))
    torch.testing.assert_close(g[0, 0], expected)
    other = MaskGroundingLoss(softmax_over='queries').similarity(masks, words, torch.tensor(2.0))
    assert not torch.allclose(g, other)


def test_captions_without_words_are_left_out():
    masks, words, _ = _case()
    loss = MaskGroundingLoss()
    only_first = loss(masks, words, torch.tensor([[True], [False]]), torch.tensor(1.0))
    both = loss(masks, words, torch.tensor([[True], [True]]), torch.tensor(1.0))
    assert torch.isfinite(only_first) and only_first != both
    none = loss(masks.requires_grad_(), words, torch.zeros(2, 1, dtype=torch.bool),
                torch.tensor(1.0))
    assert none.item() == 0.0
    none.backward()


def test_unknown_softmax_axis_is_refused():
    with pytest.raises(ValueError, match="softmax_over must be one of"):
        MaskGroundingLoss(softmax_over='pixels')

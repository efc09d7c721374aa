"""Mask logits with a backward restricted to the queries that receive a gradient."""
import pytest
import torch

from openseg_core.models.layers import mask_logits

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.mark.parametrize('rows', [[(0, 1), (0, 4), (1, 2)], [(1, 3)], []])
def test_forward_and_gradients_equal_einsum(rows):
    torch.manual_seed(0)
    embeds = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    features = torch.randn(2, 8, 6, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 5, 6, 7, dtype=torch.float64)

    def loss(out):
        # Supervise some (image, query) masks only, as mask losses do the matched queries.
        return sum((out[b, q] * weights[b, q]).sum() for b, q in rows) + 0 * out.sum()

    expected = torch.einsum('bqc,bchw->bqhw', embeds, features)
    got = mask_logits(embeds, features)
    assert torch.equal(got, expected)
    grads = torch.autograd.grad(loss(got), (embeds, features))
    ref = torch.autograd.grad(loss(expected), (embeds, features))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b)


def test_dense_gradient_equals_einsum():
    torch.manual_seed(0)
    embeds = torch.randn(2, 5, 8, requires_grad=True)
    features = torch.randn(2, 8, 6, 7, requires_grad=True)
    grad = torch.randn(2, 5, 6, 7)
    got = torch.autograd.grad(mask_logits(embeds, features), (embeds, features), grad)
    ref = torch.autograd.grad(torch.einsum('bqc,bchw->bqhw', embeds, features),
                              (embeds, features), grad)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_inference_on_nhwc_features_gives_the_einsum_in_nchw_layout():
    """The oneDNN path (NHWC features, no gradients) returns the einsum's values, laid out as
    the einsum's (NCHW), so that callers' views and flattening keep working."""
    torch.manual_seed(0)
    embeds = torch.randn(2, 7, 16)
    features = torch.randn(2, 16, 9, 11).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = mask_logits(embeds, features)
    torch.testing.assert_close(out, torch.einsum('bqc,bchw->bqhw', embeds, features),
                               rtol=1e-5, atol=1e-5)
    assert out.is_contiguous()

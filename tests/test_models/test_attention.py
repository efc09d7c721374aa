"""torch's multi-head attention without attention weights: same outputs and gradients."""
import pytest
import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVMultiheadAttention
from torch import nn

from openseg_core.models.layers import FusedMultiheadAttention, convert_multihead_attention

pytestmark = pytest.mark.usefixtures('single_thread')


def test_converted_attention_gives_the_same_outputs_with_a_boolean_mask():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, batch_first=True)
    query, key = torch.randn(2, 5, 16, requires_grad=True), torch.randn(2, 9, 16)
    mask = torch.rand(2 * 4, 5, 9) < 0.5
    mask[..., 0] = False  # every query sees at least one key
    expected, weights = attn(query, key, key, attn_mask=mask)
    (grad_expected,) = torch.autograd.grad(expected.sum(), query)
    holder = MMCVMultiheadAttention(16, 4, batch_first=True)
    holder.attn = attn
    plain = nn.MultiheadAttention(16, 4)  # not inside mmcv's module: may be asked for weights
    convert_multihead_attention(nn.Sequential(holder, plain))
    assert type(attn) is FusedMultiheadAttention and type(plain) is nn.MultiheadAttention
    out, no_weights = attn(query, key, key, attn_mask=mask)
    assert no_weights is None
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(out.sum(), query)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-5, atol=1e-6)
    # Weights on request, as torch's.
    torch.testing.assert_close(attn(query, key, key, attn_mask=mask, need_weights=True)[1],
                               weights)

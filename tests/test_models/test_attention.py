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


@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('masks', ['none', 'bool_3d_and_padding', 'float_2d'])
def test_converted_attention_matches_torch_with_its_masks_on_the_onednn_path(batch_first, masks):
    """Enough rows for the projections to run as oneDNN convolutions (layers.linear), and
    each of torch's mask forms merged as torch merges them."""
    torch.manual_seed(0)
    batch, length, keys, dims, heads = 2, 150, 130, 32, 4
    attn = nn.MultiheadAttention(dims, heads, batch_first=batch_first)
    query, key = torch.randn(batch, length, dims), torch.randn(batch, keys, dims)
    if not batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    kwargs = {}
    if masks == 'bool_3d_and_padding':
        blocked = torch.rand(batch * heads, length, keys) < 0.3
        blocked[..., 0] = False
        padding = torch.zeros(batch, keys, dtype=torch.bool)
        padding[1, -20:] = True
        kwargs = dict(attn_mask=blocked, key_padding_mask=padding)
    elif masks == 'float_2d':
        kwargs = dict(attn_mask=torch.randn(length, keys))
    query.requires_grad_(True)
    expected = attn(query, key, key, need_weights=False, **kwargs)[0]
    (grad_expected, ) = torch.autograd.grad(expected.sum(), query)
    attn.__class__ = FusedMultiheadAttention
    out = attn(query, key, key, **kwargs)[0]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    (grad, ) = torch.autograd.grad(out.sum(), query)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-4, atol=1e-5)


def test_converted_attention_builds_its_masks_on_the_inputs_device():
    """Masks merged on the CPU would fail on a GPU; the meta device stands in for one here."""
    attn = nn.MultiheadAttention(16, 4, batch_first=True, device='meta')
    attn.__class__ = FusedMultiheadAttention
    query, key = torch.randn(2, 5, 16, device='meta'), torch.randn(2, 9, 16, device='meta')
    out, _ = attn(query, key, key,
                  attn_mask=torch.zeros(2 * 4, 5, 9, dtype=torch.bool, device='meta'),
                  key_padding_mask=torch.zeros(2, 9, dtype=torch.bool, device='meta'))
    assert out.shape == (2, 5, 16) and out.device.type == 'meta'


def test_a_mask_repeated_over_heads_by_a_view_is_converted_once_and_gives_torchs_outputs():
    from openseg_core.models.mask_classification.query_decoder import repeat_over_heads
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, batch_first=True)
    query, key = torch.randn(1, 5, 16), torch.randn(1, 70, 16)
    blocked = torch.rand(1, 5, 70) < 0.5
    blocked[..., 0] = False
    repeated = repeat_over_heads(blocked, 4)
    assert repeated.stride(0) == 0  # one image: a view
    assert torch.equal(repeated, blocked.repeat_interleave(4, dim=0))
    assert repeat_over_heads(blocked.expand(2, -1, -1), 4).stride(0) != 0  # two: a copy
    with torch.no_grad():
        expected = attn(query, key, key, attn_mask=repeated)[0]  # torch's own attention
        attn.__class__ = FusedMultiheadAttention
        with torch.profiler.profile(record_shapes=True) as prof:
            out = attn(query, key, key, attn_mask=repeated)[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    fills = [e for e in prof.key_averages(group_by_input_shape=True)
             if e.key == 'aten::masked_fill_']
    assert [e.input_shapes[0] for e in fills] == [[1, 5, 70]]  # not (4, 5, 70)

import pytest
import torch

from openseg_core.models import MaskedAttentionQueryDecoder

C = 32


def _decoder(num_queries=5, layers=2):
    layer = dict(self_attn_cfg=dict(embed_dims=C, num_heads=2, dropout=0.0, batch_first=True),
                 cross_attn_cfg=dict(embed_dims=C, num_heads=2, dropout=0.0, batch_first=True),
                 ffn_cfg=dict(embed_dims=C, feedforward_channels=64, num_fcs=2, ffn_drop=0.0))
    dec = MaskedAttentionQueryDecoder(num_queries=num_queries, embed_dims=C, memory_channels=C,
                                      transformer_decoder=dict(num_layers=layers,
                                                               layer_cfg=layer))
    dec.init_weights()
    return dec.eval()


def _inputs(batch=2):
    torch.manual_seed(0)
    return (torch.randn(batch, C, 16, 16),
            [torch.randn(batch, C, s, s) for s in (2, 4, 8)])


def test_output_shapes_per_layer():
    mask_features, memories = _inputs()
    out = _decoder()(mask_features, memories)
    assert len(out.query_embeds) == len(out.mask_logits) == 3
    assert out.query_embeds[-1].shape == (2, 5, C)
    assert out.mask_logits[-1].shape == (2, 5, 16, 16)
    assert out.extra_embeds is None


def test_extra_queries_get_embeddings_but_no_masks():
    mask_features, memories = _inputs()
    out = _decoder()(mask_features, memories, extra_queries=torch.randn(2, 3, C))
    assert out.query_embeds[-1].shape == (2, 5, C)
    assert out.extra_embeds[-1].shape == (2, 3, C)
    assert out.mask_logits[-1].shape == (2, 5, 16, 16)


def test_self_attention_mask_is_honoured():
    """Blocking what extra queries may see changes them and nothing that cannot see them."""
    dec = _decoder()
    mask_features, memories = _inputs()
    extra = torch.randn(2, 3, C)
    free = dec(mask_features, memories, extra_queries=extra)
    rules = torch.zeros(8, 8, dtype=torch.bool)
    rules[:5, 5:] = True  # learned queries do not see the extra ones
    blocked = dec(mask_features, memories, extra_queries=extra, self_attn_mask=rules)
    other_extra = dec(mask_features, memories, extra_queries=torch.randn(2, 3, C),
                      self_attn_mask=rules)
    assert not torch.allclose(free.query_embeds[-1], blocked.query_embeds[-1])
    # With the rule, the learned queries are independent of the extra queries' content.
    assert torch.allclose(blocked.mask_logits[-1], other_extra.mask_logits[-1], atol=1e-5)


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic_antialias'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_resizing_by_matrices_equals_torch_resizing(interpolation, channels_last):
    from openseg_core.models.mask_classification.query_decoder import (resize_by_matrices,
                                                                       resize_masks)
    features = torch.randn(2, 6, 40, 24)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    for size in [(5, 3), (10, 6), (20, 12), (57, 30)]:  # down by 8, 4, 2, and up
        expected = resize_masks(features, size, interpolation)
        torch.testing.assert_close(resize_by_matrices(features, size, interpolation), expected,
                                   rtol=1e-5, atol=1e-5)

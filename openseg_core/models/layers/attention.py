"""torch's multi-head attention on its fused path inside mmcv's attention modules."""
from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVMultiheadAttention
from torch import Tensor, nn


class FusedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (same parameters) that returns no attention weights unless
    asked (``need_weights=False`` by default).

    mmcv's ``MultiheadAttention`` calls torch's without ``need_weights`` and discards the
    weights; computing them (torch's default) keeps attention off
    ``scaled_dot_product_attention`` and materialises the weights averaged over heads. Without
    them, a boolean mask takes the fused kernel too.
    """

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask=None,
                need_weights: bool = False, attn_mask=None, average_attn_weights: bool = True,
                is_causal: bool = False):
        return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                               need_weights=need_weights, attn_mask=attn_mask,
                               average_attn_weights=average_attn_weights, is_causal=is_causal)


def convert_multihead_attention(module: nn.Module) -> nn.Module:
    """Turn the ``nn.MultiheadAttention`` of every mmcv ``MultiheadAttention`` inside
    ``module`` (mmdet's transformer layers) into a :class:`FusedMultiheadAttention` in place,
    state-dict keys unchanged, and return ``module``. Other users of torch's attention, which
    may read the weights, are left alone.

    The class is swapped on the instance, as ``torch.nn.utils.parametrize`` does: the subclass
    adds no state, only a default.
    """
    for child in module.modules():
        if isinstance(child, MMCVMultiheadAttention) and type(child.attn) is nn.MultiheadAttention:
            child.attn.__class__ = FusedMultiheadAttention
    return module

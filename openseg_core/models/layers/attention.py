"""torch's multi-head attention on its fused path inside mmcv's attention modules."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVMultiheadAttention
from torch import Tensor, nn

from .inference_cache import inference_cache
from .linear import onednn_linear


class FusedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (same parameters) that returns no attention weights unless
    asked (``need_weights=False`` by default), and runs its projections through
    :func:`onednn_linear`.

    mmcv's ``MultiheadAttention`` calls torch's without ``need_weights`` and discards the
    weights; computing them (torch's default) keeps attention off
    ``scaled_dot_product_attention`` and materialises the weights averaged over heads. Without
    them, this forward is torch's: input projections, ``scaled_dot_product_attention`` with
    the masks merged as torch merges them, output projection. Layers torch's forward supports
    and this one does not (separate key / value widths, ``add_bias_kv``, ``add_zero_attn``)
    go to torch's.
    """

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor] = None, need_weights: bool = False,
                attn_mask: Optional[Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        if (need_weights or is_causal or not self._qkv_same_embed_dim
                or self.bias_k is not None or self.add_zero_attn or query.dim() != 3):
            return super().forward(query, key, value, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, attn_mask=attn_mask,
                                   average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        if not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, length, dims = query.shape
        weights = self.in_proj_weight.chunk(3)
        biases = (None, ) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        cache = inference_cache(self)
        q, k, v = (onednn_linear(x, w, b, cache).view(batch, -1, self.num_heads, self.head_dim)
                   .transpose(1, 2) for x, w, b in zip((query, key, value), weights, biases))
        mask = _merged_mask(attn_mask, key_padding_mask, batch, self.num_heads, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.)
        out = onednn_linear(out.transpose(1, 2).reshape(batch, length, dims),
                            self.out_proj.weight, self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), None


def _merged_mask(attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor], batch: int,
                 heads: int, dtype: torch.dtype) -> Optional[Tensor]:
    """torch's attention masks (boolean True = blocked, or additive; ``attn_mask`` ``(L, S)``
    or ``(B * heads, L, S)``, ``key_padding_mask`` ``(B, S)``) -> one additive mask that
    broadcasts to ``(B, heads, L, S)``, or None."""
    def additive(mask: Tensor) -> Tensor:
        if mask.dim() == 3 and mask.shape[0] > 1 and mask.stride(0) == 0:
            # One mask repeated over the heads by a view (``repeat_over_heads``): converted
            # once and broadcast, not materialised per head.
            return additive(mask[:1]).expand(mask.shape)
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
                mask, float('-inf'))
        return mask.to(dtype)

    merged = None
    if attn_mask is not None:
        merged = additive(attn_mask)
        if merged.dim() == 3:
            merged = merged.view(batch, heads, *merged.shape[1:])
    if key_padding_mask is not None:
        padding = additive(key_padding_mask).view(batch, 1, 1, -1)
        merged = padding if merged is None else merged + padding
    return merged


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

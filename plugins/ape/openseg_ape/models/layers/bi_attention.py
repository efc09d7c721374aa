"""GLIP's bi-directional vision-language attention block, the fusion APE puts before each
deformable encoder layer.

Written here because neither mmdet nor mmcv has it: mmdet's GLIP (``VLFusionModule``) fuses
inside its ATSS head with a different layout, and Grounding DINO's ``BiAttentionBlock``
differs in where the residual is taken. Numerically it follows APE's official block (GLIP's
``BiAttentionBlock``): pre-LayerNorm on both sides, the residual added to the *normalised*
inputs, layer-scale gammas, logits clamped to +-50000 and the language side's softmax
stabilised by its row maximum.
"""
from typing import Optional, Tuple

import torch
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ...registry import MODELS

#: fp16 cannot represent more; the official block clamps attention logits to this range.
LOGIT_CLAMP = 50000.0


class BiMultiHeadAttention(BaseModule):
    """Attention in both directions between ``Tv`` vision and ``Tl`` language tokens with
    one shared logit matrix: vision queries x language keys gives the vision update (softmax
    over language tokens), its transpose the language update (softmax over vision tokens).

    Args:
        v_dims, l_dims: widths of the vision and language tokens.
        embed_dims: attention width (split over ``num_heads``).
        dropout: on both attention maps.
        stable_softmax_2d: subtract the global maximum logit first (APE: True).
    """

    def __init__(self, v_dims: int, l_dims: int, embed_dims: int, num_heads: int,
                 dropout: float = 0.1, stable_softmax_2d: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} must be divisible by num_heads '
                             f'{num_heads}')
        self.num_heads, self.head_dims = num_heads, embed_dims // num_heads
        self.scale = self.head_dims ** -0.5
        self.dropout = dropout
        self.stable_softmax_2d = stable_softmax_2d
        self.v_proj = nn.Linear(v_dims, embed_dims)
        self.l_proj = nn.Linear(l_dims, embed_dims)
        self.values_v_proj = nn.Linear(v_dims, embed_dims)
        self.values_l_proj = nn.Linear(l_dims, embed_dims)
        self.out_v_proj = nn.Linear(embed_dims, v_dims)
        self.out_l_proj = nn.Linear(embed_dims, l_dims)
        for linear in (self.v_proj, self.l_proj, self.values_v_proj, self.values_l_proj,
                       self.out_v_proj, self.out_l_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def _heads(self, x: Tensor) -> Tensor:
        """``(B, T, E)`` -> ``(B, heads, T, E / heads)``."""
        return x.unflatten(-1, (self.num_heads, self.head_dims)).transpose(1, 2)

    def forward(self, v: Tensor, l: Tensor,
                l_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """``v (B, Tv, Cv)``, ``l (B, Tl, Cl)``, ``l_padding_mask (B, Tl)`` True = hidden from
        the vision side -> updates ``(B, Tv, Cv)``, ``(B, Tl, Cl)``."""
        logits = (self._heads(self.v_proj(v) * self.scale)
                  @ self._heads(self.l_proj(l)).transpose(-1, -2))  # (B, h, Tv, Tl)
        if self.stable_softmax_2d:
            logits = logits - logits.max()
        logits = logits.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
        logits_l = logits.transpose(-1, -2)
        logits_l = (logits_l - logits_l.max(dim=-1, keepdim=True)[0]).clamp(-LOGIT_CLAMP,
                                                                            LOGIT_CLAMP)
        if l_padding_mask is not None:
            logits = logits.masked_fill(l_padding_mask[:, None, None, :], float('-inf'))
        attn_v = nn.functional.dropout(logits.softmax(-1), self.dropout, self.training)
        attn_l = nn.functional.dropout(logits_l.softmax(-1), self.dropout, self.training)
        out_v = (attn_v @ self._heads(self.values_l_proj(l))).transpose(1, 2).flatten(2)
        out_l = (attn_l @ self._heads(self.values_v_proj(v))).transpose(1, 2).flatten(2)
        return self.out_v_proj(out_v), self.out_l_proj(out_l)


@implements(covered_by='ape.APE')
@MODELS.register_module()
class BiAttentionBlock(BaseModule):
    """Pre-norm bi-directional attention with layer scale: ``v' = LN(v) + gamma_v * dv``,
    ``l' = LN(l) + gamma_l * dl`` (the residual is the normalised input, as in GLIP).

    Args:
        v_dims, l_dims, embed_dims, num_heads, dropout, stable_softmax_2d: see
            :class:`BiMultiHeadAttention` (APE: 256, the text width, 2048, 8, 0.1, True).
        drop_path: stochastic depth on both updates.
        init_values: initial layer-scale gammas (APE: 1/6).
        with_checkpoint: recompute activations in the backward pass (saves memory).
    """

    def __init__(self, v_dims: int, l_dims: int, embed_dims: int = 2048, num_heads: int = 8,
                 dropout: float = 0.1, drop_path: float = 0.0, init_values: float = 1.0 / 6,
                 stable_softmax_2d: bool = True, with_checkpoint: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.layer_norm_v = nn.LayerNorm(v_dims)
        self.layer_norm_l = nn.LayerNorm(l_dims)
        self.attn = BiMultiHeadAttention(v_dims, l_dims, embed_dims, num_heads, dropout,
                                         stable_softmax_2d)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.gamma_v = nn.Parameter(torch.full((v_dims,), float(init_values)))
        self.gamma_l = nn.Parameter(torch.full((l_dims,), float(init_values)))
        self.with_checkpoint = with_checkpoint

    def _forward(self, v: Tensor, l: Tensor, l_padding_mask: Optional[Tensor]):
        v, l = self.layer_norm_v(v), self.layer_norm_l(l)
        delta_v, delta_l = self.attn(v, l, l_padding_mask)
        return v + self.drop_path(self.gamma_v * delta_v), l + self.drop_path(self.gamma_l
                                                                                * delta_l)

    def forward(self, v: Tensor, l: Tensor,
                l_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """``v (B, Tv, Cv)``, ``l (B, Tl, Cl)`` -> fused ``(B, Tv, Cv)``, ``(B, Tl, Cl)``."""
        if self.with_checkpoint and self.training:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(self._forward, v, l, l_padding_mask, use_reentrant=False)
        return self._forward(v, l, l_padding_mask)

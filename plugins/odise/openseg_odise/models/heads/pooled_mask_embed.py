"""ODISE's mask embedding: mask features pooled inside each predicted mask, plus the query."""
import torch
from mmdet.models.layers.transformer.utils import MLP
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ...registry import MODELS


def hard_mask_pool(features: Tensor, mask_logits: Tensor, threshold: float = 0.5) -> Tensor:
    """``(B, C, H, W)`` features averaged inside each ``(B, Q, H, W)`` mask (probability
    above ``threshold``; masks detached) -> ``(B, Q, C)``; an empty mask pools zeros."""
    masks = (mask_logits.detach().sigmoid() > threshold).to(features.dtype)
    masks = masks / (masks.sum((-1, -2), keepdim=True) + 1e-8)
    return torch.einsum('bchw,bqhw->bqc', features, masks)


@implements(covered_by='odise.CategoryODISE')
@MODELS.register_module()
class PooledMaskEmbed(BaseModule):
    """``MLP(LN(LN-Linear(pool(mask features, mask)) + query))`` -> ``(B, Q, D)`` mask
    embeddings compared with text embeddings (ODISE's ``PooledMaskEmbed``: hard pooling of
    detached masks, a 3-layer MLP).

    Args:
        mask_dim: channels ``C_m`` of the mask features.
        hidden_dim: query width ``C``.
        embed_dim: output width ``D`` (official 256).
        mask_threshold: pooling keeps pixels whose mask probability exceeds it.
    """

    def __init__(self, mask_dim: int = 256, hidden_dim: int = 256, embed_dim: int = 256,
                 mask_threshold: float = 0.5, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.mask_threshold = mask_threshold
        self.pool_proj = nn.Sequential(nn.LayerNorm(mask_dim), nn.Linear(mask_dim, hidden_dim))
        self.mask_embed = nn.Sequential(nn.LayerNorm(hidden_dim),
                                        MLP(hidden_dim, hidden_dim, embed_dim, 3))

    def forward(self, query_embeds: Tensor, mask_features: Tensor, mask_logits: Tensor) -> Tensor:
        """``(B, Q, C)`` normed queries, ``(B, C_m, H, W)`` mask features and ``(B, Q, H, W)``
        mask logits -> ``(B, Q, D)``."""
        pooled = hard_mask_pool(mask_features, mask_logits, self.mask_threshold)
        return self.mask_embed(self.pool_proj(pooled) + query_embeds)

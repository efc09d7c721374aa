"""The location prompt: SAM's prompt encoder (``transformers``) embedding boxes."""
from typing import Optional, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.models.base import FrozenPartsMixin
from openseg_core.models.interfaces import implements

from ..registry import MODELS


def sam_prompt_encoder(embed_dims: int, image_size: int = 1024, patch_size: int = 16):
    """A randomly initialised ``transformers`` ``SamPromptEncoder`` of width ``embed_dims``
    (its random frequencies drawn with SAM's scale 1)."""
    from transformers import SamConfig
    from transformers.models.sam.modeling_sam import SamPromptEncoder
    config = SamConfig(
        vision_config=dict(hidden_size=embed_dims, num_pos_feats=embed_dims // 2,
                           image_size=image_size, patch_size=patch_size),
        prompt_encoder_config=dict(hidden_size=embed_dims, image_size=image_size,
                                   patch_size=patch_size))
    encoder = SamPromptEncoder(config)
    with torch.no_grad():
        encoder.shared_embedding.positional_embedding.normal_(0.0, 1.0)
    return encoder


@implements(covered_by='pixelllm.PixelLLM')
@MODELS.register_module()
class LocationPromptEncoder(FrozenPartsMixin, BaseModule):
    """Boxes -> SAM's sparse prompt tokens, the dense "no mask" embedding and the dense
    positional encoding of a feature grid.

    As PixelLLM's released code: a box gives its two corner embeddings (``+ 0.5`` px, SAM's
    pixel-centre shift, positions relative to the padded input) followed by
    ``num_pad_tokens`` copies of SAM's "no mask" embedding, where its point path would have
    embedded the box's 4 corners and a padding point (5 tokens in all, of which the box
    path replaces all).

    Args:
        embed_dims: SAM's prompt width (256).
        pretrained: a local SAM checkpoint directory (``transformers``' ``SamModel``) whose
            prompt encoder is loaded; ``None`` keeps a random one.
        frozen: freeze it (PixelLLM's is frozen).
        num_pad_tokens: "no mask" tokens after the two corners.
    """

    def __init__(self, embed_dims: int = 256, pretrained: Optional[str] = None,
                 frozen: bool = True, num_pad_tokens: int = 3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_pad_tokens = num_pad_tokens
        self.sam = sam_prompt_encoder(embed_dims)
        if pretrained is not None:
            from .sam import load_sam_part
            load_sam_part(self.sam, pretrained, 'prompt_encoder')
        if frozen:
            self.freeze('sam', source=pretrained)

    @property
    def num_tokens(self) -> int:
        return 2 + self.num_pad_tokens

    def embed_boxes(self, boxes: Tensor, input_size: Tuple[int, int]) -> Tensor:
        """``(B, N, 4)`` ``x1, y1, x2, y2`` pixels of the ``(H, W)`` input -> ``(B, N, 2, C)``
        corner embeddings (SAM's box path)."""
        coords = (boxes + 0.5).view(*boxes.shape[:2], 2, 2)
        corners = self.sam.shared_embedding(coords, input_size)
        return torch.stack([corners[:, :, 0] + self.sam.point_embed[2].weight,
                            corners[:, :, 1] + self.sam.point_embed[3].weight], dim=2)

    def forward(self, boxes: Tensor, input_size: Tuple[int, int]) -> Tensor:
        """``(B, N, 4)`` boxes -> ``(B, N, 2 + num_pad_tokens, C)`` sparse prompt tokens."""
        corners = self.embed_boxes(boxes, input_size)
        pad = self.sam.no_mask_embed.weight.expand(*boxes.shape[:2], self.num_pad_tokens, -1)
        return torch.cat([corners, pad], dim=2)

    @property
    def no_mask_embedding(self) -> Tensor:
        """``(C,)`` SAM's dense embedding of "no mask"."""
        return self.sam.no_mask_embed.weight[0]

    def dense_pe(self, size: Tuple[int, int]) -> Tensor:
        """``(C, h, w)`` SAM's positional encoding of an ``h x w`` grid (pixel centres)."""
        height, width = size
        device = self.sam.shared_embedding.positional_embedding.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)  # (h, w, 2)
        return self.sam.shared_embedding(grid[None]).squeeze(0).permute(2, 0, 1)

"""Referring segmentation: SAM's mask decoder on the predicted box, with PixelLLM's small
zero-gated adapter that lets the prefix and the text move SAM's box prompt."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.base import FrozenPartsMixin
from openseg_core.models.interfaces import implements

from ..registry import MODELS
from .prompt_feature_extractor import two_way_transformer


def sam_mask_decoder(embed_dims: int = 256, depth: int = 2, num_heads: int = 8,
                     mlp_dims: int = 2048, iou_hidden_dims: int = 256):
    """A ``transformers`` ``SamMaskDecoder`` (SAM's defaults: 256 wide, 2 layers)."""
    from transformers import SamMaskDecoderConfig
    from transformers.models.sam.modeling_sam import SamMaskDecoder
    return SamMaskDecoder(SamMaskDecoderConfig(
        hidden_size=embed_dims, num_hidden_layers=depth, num_attention_heads=num_heads,
        mlp_dim=mlp_dims, iou_head_hidden_dim=iou_hidden_dims,
        # what transformers falls back to for a module built outside a model, named so that
        # it does not warn that "something went wrong"
        attn_implementation='eager'))


@implements(covered_by='pixelllm.PixelLLM')
@MODELS.register_module()
class MaskAdapter(BaseModule):
    """``num_tokens`` learnable tokens attend (a two-way transformer, no positional
    encoding) to the visual prefix and the text's decoder states, each projected by
    LayerNorm + Linear; ``tanh(alpha) * tokens``, with ``alpha`` zero-initialised, is added to
    the box's corner embeddings, so training starts from SAM's own box prompt.

    Args:
        prefix_channels: width of the prefix and of the decoder states (``d_model``).
        embed_dims: width of the adapter (SAM's 256).
        depth: layers of its two-way transformer.
        num_tokens: adapter tokens (2, one per box corner).
    """

    def __init__(self, prefix_channels: int, embed_dims: int = 256, depth: int = 2,
                 num_heads: int = 8, mlp_dims: int = 2048, num_tokens: int = 2, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.tokens = nn.Parameter(torch.randn(num_tokens, embed_dims))
        self.visual_proj = nn.Sequential(nn.LayerNorm(prefix_channels, eps=1e-6),
                                         nn.Linear(prefix_channels, embed_dims))
        self.text_proj = nn.Sequential(nn.LayerNorm(prefix_channels, eps=1e-6),
                                       nn.Linear(prefix_channels, embed_dims))
        self.transformer = two_way_transformer(embed_dims, depth, num_heads, mlp_dims)
        self.alpha = nn.Parameter(torch.zeros(num_tokens, embed_dims))

    def forward(self, corners: Tensor, prefix: Tensor, texts: List[Tensor]) -> Tensor:
        """``corners (B, 2, C)`` + ``prefix (B, P, D)`` + per sample its text states
        ``(T_i, D)`` -> ``(B, 2, C)`` adapted corner embeddings."""
        out = []
        # One sample at a time: its text has its own length, and SAM's final attention takes
        # no mask, so padded positions would leak into it.
        for corner, visual, text in zip(corners, prefix, texts):
            keys = torch.cat([self.visual_proj(visual), self.text_proj(text)], dim=0)
            keys = keys.T[None, :, :, None]  # as an image of (P + T) x 1 positions
            queries, _ = self.transformer(point_embeddings=self.tokens[None, None],
                                          image_embeddings=keys,
                                          image_positional_embeddings=torch.zeros_like(keys),
                                          attention_similarity=None)
            out.append(corner + torch.tanh(self.alpha) * queries[0, 0])
        return torch.stack(out)


@implements(covered_by='pixelllm.PixelLLM')
@MODELS.register_module()
class SamMaskHead(FrozenPartsMixin, BaseModule):
    """SAM's mask decoder (frozen when loaded) on a box prompt, plus the :class:`MaskAdapter`.

    Args:
        embed_dims: SAM's width (the prompt encoder's).
        in_channels: channels of the image features it reads; when they are not SAM's own
            ``embed_dims``-wide embedding, a trainable 1x1 convolution maps them (the tiny
            configs, which have no SAM).
        pretrained: a local ``SamModel`` directory whose ``mask_decoder`` is loaded (frozen).
        frozen: freeze the decoder (default: when pretrained).
        adapter: :class:`MaskAdapter` config, or ``None`` for SAM's box prompt alone.
        decoder: ``sam_mask_decoder`` sizes for a random decoder.
    """

    def __init__(self, embed_dims: int = 256, in_channels: Optional[int] = None,
                 pretrained: Optional[str] = None, frozen: Optional[bool] = None,
                 adapter: Optional[dict] = None, decoder: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.decoder = sam_mask_decoder(embed_dims, **(decoder or {}))
        if pretrained is not None:
            from .sam import load_sam_part
            load_sam_part(self.decoder, pretrained, 'mask_decoder')
        if frozen if frozen is not None else pretrained is not None:
            self.freeze('decoder', source=pretrained)
        self.input_proj = (nn.Conv2d(in_channels, embed_dims, 1)
                           if in_channels not in (None, embed_dims) else nn.Identity())
        self.adapter = MODELS.build(dict(adapter, type='pixelllm.MaskAdapter')) \
            if adapter else None

    def forward(self, image: Tensor, image_pe: Tensor, corners: Tensor, dense: Tensor,
                prefix: Optional[Tensor] = None,
                texts: Optional[List[Tensor]] = None) -> Tuple[Tensor, Tensor]:
        """One mask per image.

        Args:
            image: ``(B, C_in, h, w)`` image features.
            image_pe: ``(C, h, w)`` SAM's positional encoding of the grid.
            corners: ``(B, 2, C)`` the box's corner embeddings (prompt encoder).
            dense: ``(C,)`` SAM's "no mask" embedding.
            prefix, texts: the adapter's inputs (see :class:`MaskAdapter`).

        Returns:
            ``(B, 4h, 4w)`` mask logits and ``(B,)`` predicted IoUs.
        """
        image = self.input_proj(image)
        if self.adapter is not None:
            corners = self.adapter(corners, prefix, texts)
        batch, channels, height, width = image.shape
        masks, iou = self.decoder(
            image_embeddings=image,
            image_positional_embeddings=image_pe[None].expand(batch, -1, -1, -1),
            sparse_prompt_embeddings=corners[:, None],
            dense_prompt_embeddings=dense.view(1, -1, 1, 1).expand(batch, -1, height, width),
            multimask_output=False)
        return masks[:, 0, 0], iou[:, 0, 0]


def sam_mask_loss(logits: Tensor, iou_pred: Tensor, targets: Tensor, valid: Tensor,
                  focal_weight: float = 20.0, dice_weight: float = 1.0,
                  iou_weight: float = 1.0) -> dict:
    """PixelLLM's (SAM's) mask loss on one mask per sample.

    Written out rather than taken from mmdet because of its normalisation: the focal term
    (alpha 0.5, gamma 2) is averaged over each mask's valid (unpadded) pixels, the dice term
    (eps 1) and the IoU that SAM's IoU head regresses cover the whole padded frame.

    Args:
        logits: ``(B, h, w)`` mask logits; resized (bilinear) to the targets' size.
        iou_pred: ``(B,)`` predicted IoUs.
        targets: ``(B, H, W)`` binary masks.
        valid: ``(B, H, W)`` 1 on unpadded pixels.
    """
    logits = F.interpolate(logits[:, None], size=targets.shape[-2:], mode='bilinear',
                           align_corners=False)[:, 0]
    targets = targets.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    focal = 0.5 * ce * (1 - p_t) ** 2 * valid
    focal = focal.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    prob = prob.flatten(1)
    flat = targets.flatten(1)
    dice = 1 - (2 * (prob * flat).sum(1) + 1) / (prob.sum(1) + flat.sum(1) + 1)
    with torch.no_grad():
        hard = logits > 0
        inter = (hard & targets.bool()).flatten(1).sum(1)
        union = (hard | targets.bool()).flatten(1).sum(1)
        iou = inter / union.clamp(min=1)
    return dict(loss_mask_focal=focal_weight * focal.mean(),
                loss_mask_dice=dice_weight * dice.mean(),
                loss_mask_iou=iou_weight * ((iou_pred - iou) ** 2).mean())

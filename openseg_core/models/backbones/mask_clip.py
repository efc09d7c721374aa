"""MaskCLIP: CLIP's embedding of image regions inside an open_clip ViT, one extra class token
per region that attends only to the patches of its mask (Ding et al., "Open-Vocabulary
Universal Image Segmentation with MaskCLIP"; ODISE's CLIP classifier)."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.registry import MODELS

from ..base import FrozenPartsMixin
from ..interfaces import contract, expect, expect_finite, expect_shape, implements
from .open_clip_image_backbone import load_open_clip_visual

TINY_VIT = dict(model_name='ViT-B-16', embed_dim=8,
                vision_cfg=dict(image_size=32, patch_size=8, width=16, layers=2, head_width=8),
                frozen=False)


@contract('clip.MaskEmbedder')
def check_mask_embedder(part, size=32) -> None:
    """``embed_masks(images (B, 3, H, W), mask logits (B, Q, h, w))`` -> ``(B, Q, D)``; a
    region's embedding depends on its own mask only, and the image's own embedding
    (``visual(images)``) is what the tower gives without regions."""
    part.eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, size, size, generator=gen)
    half = size // 4
    masks = torch.full((2, 3, size // 2, size // 2), -10.0)
    masks[:, 0, :, :half] = 10.0   # left half
    masks[:, 1, :half] = 10.0      # top half
    masks[:, 2] = 10.0             # everything
    with torch.no_grad():
        embeds, image_embeds = part.embed_masks(images, masks, return_image_embeds=True)
        expect_shape(embeds, (2, 3, part.embed_dim), 'region embeddings')
        expect_finite(embeds, 'region embeddings')
        expect(torch.allclose(image_embeds, part.visual(F.interpolate(
            images, size=part.image_size, mode='bilinear', align_corners=False)), atol=1e-4),
            'the image tokens must not see the region tokens (image embedding unchanged)')
        changed = masks.clone()
        changed[:, 1] = -changed[:, 1]  # the bottom half
        other = part.embed_masks(images, changed)
        expect(torch.allclose(other[:, 0], embeds[:, 0], atol=1e-5)
               and torch.allclose(other[:, 2], embeds[:, 2], atol=1e-5),
               "a region's embedding must not depend on another region's mask")
        expect(not torch.allclose(other[:, 1], embeds[:, 1], atol=1e-5),
               "a region's embedding must depend on its own mask")


@implements('clip.MaskEmbedder', example=TINY_VIT)
@MODELS.register_module()
class MaskCLIP(FrozenPartsMixin, BaseModule):
    """An open_clip ViT image tower that embeds image regions given as masks.

    Each region gets a copy of the class token (after the positional embedding and
    ``ln_pre``) that attends to the class token and to the patches its mask touches, and to
    nothing else; no token attends to the region tokens, so the image's own tokens, and its
    embedding, are CLIP's unchanged. The region tokens leave the tower through CLIP's own
    ``ln_post`` and projection, so they are compared with CLIP text embeddings as the class
    token is. A patch belongs to a mask when the mask's probability exceeds 0.5 anywhere in
    it (max-pooled over the patch, as the official ODISE code does).

    Unlike pooling a feature map (:class:`OpenCLIPImageBackbone`'s ``embed_regions``), this
    needs no dense CLIP features, which a ViT's patch tokens are not trained to be.

    Args:
        model_name: an open_clip architecture with a ViT image tower (``ViT-L-14-336``; the
            OpenAI weights need the ``-quickgelu`` variant).
        vision_cfg: overrides of its ``CLIPVisionCfg`` (tiny towers for tests).
        embed_dim: CLIP embedding width ``D``; default the architecture's.
        pretrained: a local open_clip / OpenAI CLIP checkpoint (``visual.*`` keys); ``None``
            keeps the random initialisation. Nothing is downloaded.
        frozen: openseg's frozen-part convention (loaded from ``pretrained``, left out of
            checkpoints).
    """

    def __init__(self, model_name: str = 'ViT-L-14-336-quickgelu',
                 vision_cfg: Optional[dict] = None, embed_dim: Optional[int] = None,
                 pretrained: Optional[str] = None, frozen: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        import open_clip
        from open_clip.model import _build_vision_tower
        from open_clip.transformer import VisionTransformer

        arch = open_clip.get_model_config(model_name)
        if arch is None:
            raise ValueError(f'unknown open_clip architecture {model_name!r}; choose one of '
                             'open_clip.list_models()')
        cfg = dict(arch['vision_cfg'], **(vision_cfg or {}))
        self.embed_dim = embed_dim or arch['embed_dim']
        self.visual = _build_vision_tower(self.embed_dim, cfg,
                                          quick_gelu=arch.get('quick_gelu', False))
        if not isinstance(self.visual, VisionTransformer):
            raise ValueError(f'{model_name} has no ViT image tower; MaskCLIP needs one (use '
                             'OpenCLIPImageBackbone for convolutional CLIPs)')
        # CLIP's similarity scale travels with the tower: region logits use it.
        self.register_buffer('logit_scale', torch.tensor(math.log(1 / 0.07)))
        size = self.visual.image_size
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.patch_size = self.visual.conv1.kernel_size
        self.frozen = frozen
        if pretrained is not None:
            self._load_pretrained(pretrained)
        if frozen:
            self.freeze('', source=pretrained)

    def _load_pretrained(self, path: str) -> None:
        load_open_clip_visual(self.visual, self.logit_scale, path, extra_keys_allowed=True)

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` normalised as CLIP was trained -> ``(B, D)`` image embeddings (the
        input resized to the tower's size)."""
        return self.visual(self._resize(images))

    def _resize(self, images: Tensor) -> Tensor:
        if tuple(images.shape[-2:]) == self.image_size:
            return images
        return F.interpolate(images, size=self.image_size, mode='bilinear', align_corners=False)

    def region_attention_mask(self, mask_logits: Tensor) -> Tensor:
        """``(B, Q, h, w)`` mask logits -> ``(B, Q + 1 + P, Q + 1 + P)`` additive attention
        mask (``-inf`` = blocked) over ``[regions | class | P patches]``."""
        batch, queries = mask_logits.shape[:2]
        masks = F.interpolate(mask_logits, size=self.image_size, mode='bilinear',
                              align_corners=False)
        # A patch is in the region when any of its pixels is (probability > 0.5).
        inside = F.max_pool2d(masks, kernel_size=self.patch_size,
                              stride=self.patch_size).flatten(2) > 0
        patches = inside.shape[-1]
        total = queries + 1 + patches
        blocked = torch.zeros(batch, total, total, dtype=torch.bool, device=masks.device)
        blocked[:, :, :queries] = True
        blocked[:, :queries, queries + 1:] = ~inside
        return torch.zeros(blocked.shape, dtype=mask_logits.dtype,
                           device=masks.device).masked_fill(blocked, float('-inf'))

    def embed_masks(self, images: Tensor, mask_logits: Tensor,
                    return_image_embeds: bool = False):
        """CLIP embeddings of regions.

        Args:
            images: ``(B, 3, H, W)`` normalised as CLIP was trained (resized to the tower's
                input size here).
            mask_logits: ``(B, Q, h, w)`` the regions' mask logits over the same image (any
                resolution; resized with the image).
            return_image_embeds: also return the image embeddings ``(B, D)``, computed in the
                same pass.

        Returns:
            ``(B, Q, D)`` region embeddings (not normalised), and the image embeddings if
            asked.
        """
        visual = self.visual
        images = self._resize(images)
        queries = mask_logits.shape[1]
        tokens = visual._embeds(images)                                    # (B, 1 + P, W)
        x = torch.cat([tokens[:, :1].expand(-1, queries, -1), tokens], dim=1)
        attn_mask = self.region_attention_mask(mask_logits.to(tokens.dtype))
        heads = visual.transformer.resblocks[0].attn.num_heads
        x = visual.transformer(x, attn_mask=attn_mask.repeat_interleave(heads, dim=0))
        x = visual.ln_post(x[:, :queries + 1])
        if visual.proj is not None:
            x = x @ visual.proj
        if return_image_embeds:
            return x[:, :queries], x[:, queries]
        return x[:, :queries]

"""Mask2Former's masked-attention query decoder, with attention rules as inputs."""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import Conv2d
from mmdet.models.layers import Mask2FormerTransformerDecoder, SinePositionalEncoding
from mmengine.model import BaseModule, caffe2_xavier_init
from torch import Tensor, nn

from openseg_core.registry import MODELS

from ..interfaces import implements
from ..layers import mask_logits


#: How masks are resized (``resize_masks``).
MASK_INTERPOLATIONS = ('bilinear', 'bicubic_antialias')


def resize_masks(masks: Tensor, size, interpolation: str = 'bilinear') -> Tensor:
    """``(B, N, h, w)`` -> ``(B, N, *size)``, ``'bilinear'`` or ``'bicubic_antialias'``."""
    if interpolation == 'bicubic_antialias':
        return F.interpolate(masks, size=tuple(size), mode='bicubic', align_corners=False,
                             antialias=True)
    return F.interpolate(masks, size=tuple(size), mode='bilinear', align_corners=False)


def interpolation_matrix(size_in: int, size_out: int, interpolation: str = 'bilinear',
                         device=None, dtype=torch.float32) -> Tensor:
    """``(size_out, size_in)``: the weight :func:`resize_masks` gives each input row when it
    resizes one axis, read off by resizing an identity (along that axis only: both
    interpolations are separable)."""
    eye = torch.eye(size_in, device=device, dtype=dtype)[None, None]
    return resize_masks(eye, (size_out, size_in), interpolation)[0, 0]


def resize_by_matrices(features: Tensor, size, interpolation: str = 'bilinear') -> Tensor:
    """``(B, C, H, W)`` -> ``(B, C, h, w)``: :func:`resize_masks` (to float rounding) as two
    matrix products with its own per-axis weights, returned in NHWC layout.

    torch's antialiased bicubic kernel runs channel by channel: for the 512-channel mask
    features of X-Decoder's paper config resized to the three memories' sizes it took 94 ms per
    image on 2 CPU cores (NHWC input), the products 22 ms. Antialiased downsizing reads many
    input rows per output row, which is a small dense product's work."""
    batch, channels, height, width = features.shape
    rows = interpolation_matrix(height, size[0], interpolation, features.device, features.dtype)
    cols = interpolation_matrix(width, size[1], interpolation, features.device, features.dtype)
    resized = torch.matmul(cols, features.permute(0, 2, 3, 1))  # (B, H, w, C)
    resized = torch.matmul(rows, resized.reshape(batch, height, -1))  # (B, h, w * C)
    return resized.view(batch, size[0], size[1], channels).permute(0, 3, 1, 2)


def repeat_over_heads(mask: Tensor, heads: int) -> Tensor:
    """``(B, Q, S)`` -> ``(B * heads, Q, S)``, torch's layout of an attention mask. For one
    image a view that repeats the mask without copying it: the fused attention converts it
    once instead of once per head, and attends with it broadcast over the heads."""
    if mask.shape[0] == 1:
        return mask.expand(heads, -1, -1)
    return mask.repeat_interleave(heads, dim=0)


@dataclass
class QueryDecoderOutput:
    """What a mask-classification query decoder returns, per prediction: ``L + 1`` entries,
    the learned queries' own prediction first, then one per decoder layer.

    A decoder with more query sets subclasses this and adds fields (X-Decoder adds the
    global and text queries' outputs).
    """
    #: ``(B, Q, C)`` normed outputs of the mask queries.
    query_embeds: List[Tensor]
    #: ``(B, Q, H/4, W/4)`` mask logits of the mask queries (``None`` for all but the last
    #: prediction when the decoder ran with ``intermediate_masks=False``).
    mask_logits: List[Optional[Tensor]]
    #: ``(B, Q_extra, C)`` normed outputs of the extra queries, when there are any.
    extra_embeds: Optional[List[Tensor]] = None


TINY_DECODER = dict(
    num_layers=2, return_intermediate=True,
    layer_cfg=dict(self_attn_cfg=dict(embed_dims=16, num_heads=2, batch_first=True),
                   cross_attn_cfg=dict(embed_dims=16, num_heads=2, batch_first=True),
                   ffn_cfg=dict(embed_dims=16, feedforward_channels=32)),
    init_cfg=None)


@implements('mask_classification.QueryDecoder',
            example=dict(num_queries=5, embed_dims=16, memory_channels=16,
                         transformer_decoder=TINY_DECODER),
            inputs=dict(channels=16))
@MODELS.register_module()
class MaskedAttentionQueryDecoder(BaseModule):
    """Learned queries refined by mmdet's ``Mask2FormerTransformerDecoderLayer`` stack.

    mmdet's ``Mask2FormerHead`` fuses this loop with a closed-set ``Linear`` classifier and
    fixed query sets; openseg needs the decoder alone so that open-vocabulary heads, extra
    query sets (X-Decoder's text queries, APE's prompts) and task-specific self-attention
    masks can be plugged in. The layers themselves are mmdet's.

    Args:
        num_queries: learned (latent) queries ``Q_mask``; each predicts a mask.
        embed_dims: query width ``C``; equal to the pixel decoder's output channels.
        memory_channels: channels of the pixel decoder's memories.
        num_feature_levels: memories cycled through, low to high resolution.
        num_heads: attention heads.
        transformer_decoder: config of mmdet's ``Mask2FormerTransformerDecoder``.
        mask_threshold: a query attends only to pixels where its last mask's sigmoid is above.
        attn_mask_interpolation: how a mask is resized to a memory's size before the
            threshold: ``'bilinear'`` (Mask2Former) or ``'bicubic_antialias'`` (X-Decoder's
            official code; antialiasing changes the kernel even when upsampling).
    """

    def __init__(self, num_queries: int = 100, embed_dims: int = 256,
                 memory_channels: int = 256, num_feature_levels: int = 3,
                 transformer_decoder: Optional[dict] = None, mask_threshold: float = 0.5,
                 attn_mask_interpolation: str = 'bilinear', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if attn_mask_interpolation not in MASK_INTERPOLATIONS:
            raise ValueError(f'attn_mask_interpolation must be one of {MASK_INTERPOLATIONS}, '
                             f'not {attn_mask_interpolation!r}')
        self.attn_mask_interpolation = attn_mask_interpolation
        if transformer_decoder is None:
            raise ValueError('transformer_decoder config is required')
        self.decoder = Mask2FormerTransformerDecoder(**transformer_decoder)
        if self.decoder.embed_dims != embed_dims:
            raise ValueError(f'transformer_decoder embed_dims {self.decoder.embed_dims} != '
                             f'embed_dims {embed_dims}')
        self.num_queries = num_queries
        self.num_heads = self.decoder.layers[0].cross_attn.num_heads
        self.num_feature_levels = num_feature_levels
        self.mask_threshold = mask_threshold
        self.input_projs = nn.ModuleList(
            Conv2d(memory_channels, embed_dims, 1) if memory_channels != embed_dims
            else nn.Identity() for _ in range(num_feature_levels))
        self.positional_encoding = SinePositionalEncoding(num_feats=embed_dims // 2,
                                                          normalize=True)
        self.level_embed = nn.Embedding(num_feature_levels, embed_dims)
        self.query_feat = nn.Embedding(num_queries, embed_dims)
        self.query_pos = nn.Embedding(num_queries, embed_dims)
        self.mask_embed = nn.Sequential(
            nn.Linear(embed_dims, embed_dims), nn.ReLU(inplace=True),
            nn.Linear(embed_dims, embed_dims), nn.ReLU(inplace=True),
            nn.Linear(embed_dims, embed_dims))

    def init_weights(self) -> None:
        super().init_weights()
        for proj in self.input_projs:
            if isinstance(proj, Conv2d):
                caffe2_xavier_init(proj, bias=0)
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def memory_keys(self, memories: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per level, the keys ``(B, h_i * w_i, C)`` (projected memory + level embedding) and
        their sine positions."""
        keys, key_pos = [], []
        for level in range(self.num_feature_levels):
            memory = memories[level]
            no_padding = memory.new_zeros((memory.shape[0],) + memory.shape[-2:],
                                          dtype=torch.bool)
            keys.append(self.input_projs[level](memory).flatten(2).transpose(1, 2)
                        + self.level_embed.weight[level])
            key_pos.append(self.positional_encoding(no_padding).flatten(2).transpose(1, 2))
        return keys, key_pos

    @torch.no_grad()
    def blocked_pixels(self, mask_logits: Tensor, attn_size) -> Tensor:
        """``(B, N, h, w)`` mask logits -> ``(B, N, h' * w')`` True where a query may not look
        (outside its mask at the next memory's size); a query whose mask is empty everywhere
        would attend to nothing, so it sees all."""
        if tuple(mask_logits.shape[-2:]) != tuple(attn_size):
            mask_logits = resize_masks(mask_logits, attn_size, self.attn_mask_interpolation)
        blocked = mask_logits.flatten(2).sigmoid() < self.mask_threshold
        return blocked & ~blocked.all(-1, keepdim=True)

    def resized_mask_features(self, mask_features: Tensor, sizes) -> dict:
        """``{(h, w): (B, C, h, w)}``: the mask features resized to each attention size, as
        ``blocked_pixels`` resizes masks. A mask is linear in the features and so is resizing:
        masks from resized features equal resized masks (to float rounding) at a fraction of
        the cost, when the masks themselves are not needed at ``H/4``."""
        sizes = {tuple(size) for size in sizes}
        if self.attn_mask_interpolation == 'bilinear':
            # torch's CPU bilinear kernel vectorises over channels in NHWC, over the output
            # row in NCHW: for wide features resized to small maps NHWC is 3x faster, the
            # copy included (256 or 512 channels at 128 x 128, 2 cores), and gives the
            # same values.
            mask_features = mask_features.contiguous(memory_format=torch.channels_last)
            return {size: resize_masks(mask_features, size, 'bilinear') for size in sizes}
        return {size: resize_by_matrices(mask_features, size, self.attn_mask_interpolation)
                for size in sizes}

    @torch.no_grad()
    def blocked_outside(self, region: Tensor, attn_size) -> Tensor:
        """``(B, H', W')`` region in ``[0, 1]`` -> ``(B, h' * w')`` True outside it at the next
        memory's size (everywhere False if the region is empty there)."""
        region = F.interpolate(region[:, None].float(), attn_size, mode='bilinear',
                               align_corners=False).flatten(1)
        outside = region < 0.5
        return outside & ~outside.all(-1, keepdim=True)

    def _predict_masks(self, queries: Tensor, mask_features: Tensor, num_mask_queries: int,
                       attn_size, extra_region: Optional[Tensor] = None,
                       resized_features: Optional[dict] = None) -> tuple:
        """Returns normed queries ``(B, Q, C)``, mask logits ``(B, Q_mask, h, w)`` and the
        cross-attention mask ``(B * heads, Q, h' * w')`` (True = blocked) for the next layer.

        With ``resized_features`` (:meth:`resized_mask_features`) the masks are computed at
        the attention size only, for the attention mask, and ``None`` is returned for them;
        with ``attn_size=None`` no attention mask is made (the last prediction)."""
        queries = self.decoder.post_norm(queries)
        embeds = self.mask_embed(queries[:, :num_mask_queries])
        if resized_features is not None:
            masks = None
            with torch.no_grad():
                small = mask_logits(embeds, resized_features[tuple(attn_size)])
            blocked = self.blocked_pixels(small, attn_size)
        else:
            masks = mask_logits(embeds, mask_features)
            if attn_size is None:
                return queries, masks, None
            blocked = self.blocked_pixels(masks, attn_size)
        num_extra = queries.shape[1] - num_mask_queries
        if num_extra:
            # Extra queries (text, prompts) have no mask of their own: they see the whole
            # image, or only a given region (X-Decoder's mask-modulated captioning).
            extra = blocked.new_zeros(blocked.shape[0], num_extra, blocked.shape[2])
            if extra_region is not None:
                extra = self.blocked_outside(extra_region, attn_size)[:, None].expand_as(extra)
            blocked = torch.cat([blocked, extra], dim=1)
        return queries, masks, repeat_over_heads(blocked, self.num_heads)

    def forward(self, mask_features: Tensor, memories: List[Tensor],
                extra_queries: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                extra_query_pos: Optional[Tensor] = None,
                extra_region: Optional[Tensor] = None,
                intermediate_masks: bool = True) -> QueryDecoderOutput:
        """Decode.

        Args:
            mask_features: ``(B, C, H/4, W/4)`` per-pixel embeddings.
            memories: ``num_feature_levels`` maps ``(B, C_mem, h_i, w_i)``, low to high res.
            extra_queries: ``(B, Q_extra, C)`` queries appended after the learned ones (e.g.
                text queries); they cross-attend everywhere and predict no mask.
            self_attn_mask: ``(Q, Q)`` or ``(B * heads, Q, Q)`` bool, True = blocked, over
                the ``Q = Q_mask + Q_extra`` queries.
            extra_query_pos: ``(B, Q_extra, C)`` positional embeddings of the extra queries
                (default zeros).
            extra_region: ``(B, H', W')`` in ``[0, 1]``: extra queries cross-attend only where
                it is above 0.5 (default: everywhere).
            intermediate_masks: ``False`` (inference): only the last prediction's masks are
                computed at ``H/4``, the earlier ones are ``None``; their attention masks come
                from the mask features resized to each memory's size, which gives the same
                masks to float rounding (:meth:`resized_mask_features`).

        Returns:
            :class:`QueryDecoderOutput`: ``num_layers + 1`` predictions.
        """
        batch = mask_features.shape[0]
        keys, key_pos = self.memory_keys(memories)
        queries = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        query_pos = self.query_pos.weight.unsqueeze(0).expand(batch, -1, -1)
        if extra_queries is not None:
            queries = torch.cat([queries, extra_queries], dim=1)
            if extra_query_pos is None:
                extra_query_pos = torch.zeros_like(extra_queries)
            query_pos = torch.cat([query_pos, extra_query_pos], dim=1)

        resized = None
        if not intermediate_masks and len(self.decoder.layers):
            resized = self.resized_mask_features(mask_features,
                                                 [memory.shape[-2:] for memory in memories])
        normed, masks, blocked = self._predict_masks(
            queries, mask_features, self.num_queries, memories[0].shape[-2:], extra_region,
            resized)
        all_embeds, all_masks = [normed], [masks]
        num_layers = len(self.decoder.layers)
        for index, layer in enumerate(self.decoder.layers):
            level = index % self.num_feature_levels
            queries = layer(query=queries, key=keys[level], value=keys[level],
                            query_pos=query_pos, key_pos=key_pos[level],
                            cross_attn_mask=blocked, self_attn_mask=self_attn_mask,
                            query_key_padding_mask=None, key_padding_mask=None)
            last = index == num_layers - 1
            next_size = None if last else \
                memories[(index + 1) % self.num_feature_levels].shape[-2:]
            normed, masks, blocked = self._predict_masks(
                queries, mask_features, self.num_queries, next_size, extra_region,
                None if last else resized)
            all_embeds.append(normed)
            all_masks.append(masks)
        num_mask = self.num_queries
        return QueryDecoderOutput(
            query_embeds=[q[:, :num_mask] for q in all_embeds], mask_logits=all_masks,
            extra_embeds=[q[:, num_mask:] for q in all_embeds] if extra_queries is not None
            else None)

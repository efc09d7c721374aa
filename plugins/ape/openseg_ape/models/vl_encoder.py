"""Deformable encoder with a vision-language fusion block before each layer (APE)."""
from typing import Optional, Tuple

from mmdet.models.layers.transformer import (DeformableDetrTransformerEncoder,
                                             DeformableDetrTransformerEncoderLayer)
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from openseg_core.models.interfaces import implements

from ..registry import MODELS


@implements(covered_by='ape.APE')
@MODELS.register_module()
class VLDeformableEncoder(BaseModule):
    """mmdet's Deformable-DETR encoder layers, each preceded by a fusion block
    (``ape.BiAttentionBlock``) that updates the image tokens and the language tokens.

    Args:
        num_layers: encoder layers (APE: 6).
        layer_cfg: an mmdet ``DeformableDetrTransformerEncoderLayer`` config
            (multi-scale deformable self-attention + FFN, post-norm).
        fusion_cfg: the fusion block before each layer; ``None``: no fusion (a plain
            Deformable-DETR encoder).
    """

    def __init__(self, num_layers: int, layer_cfg: dict, fusion_cfg: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.layers = ModuleList([DeformableDetrTransformerEncoderLayer(**layer_cfg)
                                  for _ in range(num_layers)])
        self.embed_dims = self.layers[0].embed_dims
        self.vl_layers = None if fusion_cfg is None else ModuleList(
            [MODELS.build(fusion_cfg) for _ in range(num_layers)])

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor, valid_ratios: Tensor,
                lang: Optional[Tensor] = None,
                lang_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """Image tokens ``(B, N, C)`` (``N`` = all levels' positions) and language tokens
        ``(B, T, D)`` (``lang_padding_mask (B, T)`` True = hidden from the image) -> memory
        ``(B, N, C)`` and the fused language tokens ``(B, T, D)``."""
        reference_points = DeformableDetrTransformerEncoder.get_encoder_reference_points(
            spatial_shapes, valid_ratios, device=query.device)
        for index, layer in enumerate(self.layers):
            if self.vl_layers is not None and lang is not None:
                query, lang = self.vl_layers[index](query, lang, lang_padding_mask)
            query = layer(query=query, query_pos=query_pos, key_padding_mask=key_padding_mask,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          valid_ratios=valid_ratios, reference_points=reference_points)
        return query, lang

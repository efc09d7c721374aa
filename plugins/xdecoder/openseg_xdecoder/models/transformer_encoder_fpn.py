"""X-Decoder's ``transformer_encoder_fpn`` pixel decoder on top of mmdet's.

X-Decoder (official ``xdecoder/body/encoder/transformer_encoder_fpn.py``) uses MaskFormer's
``TransformerEncoderPixelDecoder``: a 1x1 ``input_proj`` and a DETR transformer encoder (post-LN,
ReLU FFN, sine positions, no padding mask) on the lowest-resolution map, a 3x3 conv + GN + ReLU
on its output (``layer_4``), then an FPN top-down path (1x1 lateral conv + GN, nearest
upsampling, 3x3 conv + GN + ReLU) and a 3x3 ``mask_features`` conv. mmdet's
``TransformerEncoderPixelDecoder`` has exactly these layers (``encoder_in_proj``, ``encoder``,
``encoder_out_proj``, ``lateral_convs``, ``output_convs``, ``mask_feature``); this subclass only
changes ``forward`` so that it also returns the multi-scale maps that X-Decoder's decoder
cross-attends.

Official order of those maps (``multi_scale_features``, ``maskformer_num_feature_levels = 3``):
the first three FPN outputs in top-down order, i.e. ``[layer_4(encoder(res5)), layer_3(res4
level), layer_2(res3 level)]`` = strides 32, 16, 8, low to high resolution. The decoder's layer
``i`` cross-attends level ``i % 3``, starting with the stride-32 map, which is what openseg's
``MaskedAttentionQueryDecoder`` does with ``memories[i % 3]``. The stride-4 FPN output goes only
into ``mask_features``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers import TransformerEncoderPixelDecoder
from mmengine.model import caffe2_xavier_init
from torch import Tensor, nn

from openseg_core.models.interfaces import implements
from openseg_xdecoder.registry import MODELS


@implements('mask_classification.PixelDecoder',
            example=dict(in_channels=(16, 32, 64, 128), feat_channels=32, out_channels=32,
                         num_encoder_layers=1, num_heads=2, feedforward_channels=64,
                         norm_cfg=dict(type='GN', num_groups=8)),
            inputs=dict(in_channels=(16, 32, 64, 128), channels=32))
@MODELS.register_module()
class TransformerEncoderFPN(TransformerEncoderPixelDecoder):
    """mmdet's ``TransformerEncoderPixelDecoder`` returning ``(mask_features, memories)``.

    Official Focal-T X-Decoder settings (the defaults): ``in_channels=(96, 192, 384, 768)``
    (res2..res5), ``feat_channels=512`` (``CONVS_DIM``), ``out_channels=512`` (``MASK_DIM``),
    GN(32) convs without bias, 6 encoder layers (``TRANSFORMER_ENC_LAYERS``) of 8 heads,
    FFN 2048, dropout 0.0, post-norm (``PRE_NORM: False``), sine positions with 256 features per
    axis, normalised.

    Args:
        in_channels: channels of the input maps, high to low resolution (strides 4..32).
        feat_channels: FPN / encoder width.
        out_channels: ``mask_features`` channels.
        num_outs: multi-scale maps returned (official: always 3), low to high resolution.
        num_encoder_layers: transformer encoder layers on the last map.
        num_heads: encoder attention heads.
        feedforward_channels: encoder FFN hidden width.
        dropout: encoder attention / FFN dropout.
        use_padding_mask: mask the padded area of the batch in the encoder and the positional
            encoding (mmdet's behaviour) when ``batch_img_metas`` are given. Official
            X-Decoder does not (False).
        norm_cfg, act_cfg: conv normalisation / activation.
        encoder: full mmdet ``DetrTransformerEncoder`` config, overriding the four encoder
            arguments above.
        positional_encoding: ``SinePositionalEncoding`` config (default: ``feat_channels // 2``
            features per axis, normalised, as official).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (96, 192, 384, 768),
                 feat_channels: int = 512,
                 out_channels: int = 512,
                 num_outs: int = 3,
                 num_encoder_layers: int = 6,
                 num_heads: int = 8,
                 feedforward_channels: int = 2048,
                 dropout: float = 0.0,
                 use_padding_mask: bool = False,
                 norm_cfg: dict = dict(type='GN', num_groups=32),
                 act_cfg: dict = dict(type='ReLU'),
                 encoder: Optional[dict] = None,
                 positional_encoding: Optional[dict] = None,
                 init_cfg=None):
        if num_outs > len(in_channels):
            raise ValueError(f'num_outs {num_outs} > number of inputs {len(in_channels)}')
        if encoder is None:
            encoder = dict(
                num_layers=num_encoder_layers,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=feat_channels, num_heads=num_heads,
                                       attn_drop=dropout, proj_drop=dropout,
                                       dropout_layer=None, batch_first=True),
                    ffn_cfg=dict(embed_dims=feat_channels,
                                 feedforward_channels=feedforward_channels, num_fcs=2,
                                 ffn_drop=dropout, act_cfg=dict(type='ReLU', inplace=True)),
                    norm_cfg=dict(type='LN')))
        if positional_encoding is None:
            positional_encoding = dict(num_feats=feat_channels // 2, normalize=True)
        super().__init__(in_channels=list(in_channels), feat_channels=feat_channels,
                         out_channels=out_channels, norm_cfg=norm_cfg, act_cfg=act_cfg,
                         encoder=encoder, positional_encoding=positional_encoding,
                         init_cfg=init_cfg)
        self.num_outs = num_outs
        self.use_padding_mask = use_padding_mask

    def init_weights(self) -> None:
        """As official: c2 xavier for every conv, xavier-uniform for the encoder matrices."""
        for conv in list(self.lateral_convs) + list(self.output_convs):
            caffe2_xavier_init(conv.conv, bias=0)
        caffe2_xavier_init(self.mask_feature, bias=0)
        caffe2_xavier_init(self.encoder_in_proj, bias=0)
        caffe2_xavier_init(self.encoder_out_proj.conv, bias=0)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _padding_mask(self, feat: Tensor, batch_img_metas: Optional[List[dict]]) -> Tensor:
        bs, _, h, w = feat.shape
        if not (self.use_padding_mask and batch_img_metas):
            return feat.new_zeros((bs, h, w), dtype=torch.bool)
        input_h, input_w = batch_img_metas[0]['batch_input_shape']
        mask = feat.new_ones((bs, input_h, input_w))
        for i, meta in enumerate(batch_img_metas):
            img_h, img_w = meta['img_shape'][:2]
            mask[i, :img_h, :img_w] = 0
        return F.interpolate(mask[:, None], size=(h, w), mode='nearest')[:, 0].bool()

    def forward(self, feats: Sequence[Tensor],
                batch_img_metas: Optional[List[dict]] = None) -> Tuple[Tensor, List[Tensor]]:
        """Args:
            feats: ``len(in_channels)`` maps ``(B, C_i, H_i, W_i)``, high to low resolution.
            batch_img_metas: only used with ``use_padding_mask``.

        Returns:
            ``mask_features (B, out_channels, H_0, W_0)`` and ``memories``: ``num_outs`` maps
            ``(B, feat_channels, h, w)`` from the lowest resolution up (strides 32, 16, 8 for
            the default four inputs); ``memories[0]`` is ``encoder_out_proj`` of the encoder
            output.
        """
        feat_last = feats[-1]
        bs, _, h, w = feat_last.shape
        padding_mask = self._padding_mask(feat_last, batch_img_metas)
        pos_embed = self.positional_encoding(padding_mask).flatten(2).transpose(1, 2)
        query = self.encoder_in_proj(feat_last).flatten(2).transpose(1, 2)
        key_padding_mask = padding_mask.flatten(1) if padding_mask.any() else None
        memory = self.encoder(query=query, query_pos=pos_embed,
                              key_padding_mask=key_padding_mask)
        memory = memory.transpose(1, 2).reshape(bs, self.encoder_embed_dims, h, w)

        y = self.encoder_out_proj(memory)
        memories = [y]
        for i in range(self.num_inputs - 2, -1, -1):
            lateral = self.lateral_convs[i](feats[i])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode='nearest')
            y = self.output_convs[i](y)
            if len(memories) < self.num_outs:
                memories.append(y)
        return self.mask_feature(y), memories

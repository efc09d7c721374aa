"""Building blocks shared by model families that mmcv / mmdet lack or run slowly on a CPU."""
from .attention import FusedMultiheadAttention, convert_multihead_attention
from .deformable_attention import (FastMultiScaleDeformableAttention,
                                   convert_deformable_attention,
                                   multi_scale_deformable_attn_cpu,
                                   multi_scale_deformable_attn_grid_sample, sample_at_pixels)
from .deformable_pixel_decoder import FastMSDeformAttnPixelDecoder, convert_pixel_decoder
from .fast_layers import convert_fast_layers
from .linear import OneDNNLinear, WeightCopies, convert_linear, onednn_linear, weight_copies
from .mask_logits import mask_logits

__all__ = ['FusedMultiheadAttention', 'convert_multihead_attention',
           'FastMultiScaleDeformableAttention', 'convert_deformable_attention',
           'multi_scale_deformable_attn_cpu', 'multi_scale_deformable_attn_grid_sample',
           'sample_at_pixels',
           'mask_logits', 'OneDNNLinear', 'convert_linear', 'onednn_linear', 'WeightCopies',
           'weight_copies',
           'convert_fast_layers', 'FastMSDeformAttnPixelDecoder', 'convert_pixel_decoder']

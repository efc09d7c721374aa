"""Building blocks shared by model families that mmcv / mmdet lack or run slowly on a CPU."""
from .attention import FusedMultiheadAttention, convert_multihead_attention
from .deformable_attention import (FastMultiScaleDeformableAttention,
                                   convert_deformable_attention,
                                   multi_scale_deformable_attn_cpu,
                                   multi_scale_deformable_attn_grid_sample, sample_at_pixels)
from .deformable_pixel_decoder import FastMSDeformAttnPixelDecoder, convert_pixel_decoder
from .fast_conv import FastConv2d, conv2d_activation, convert_conv2d
from .fast_layers import convert_fast_layers, flop_formulas
from .folded_batch_norm import (FoldedBatchNorm2d, FoldedConv2d, convert_batch_norm_folding,
                                fold_batch_norm)
from .inference_cache import InferenceCache, inference_cache
from .linear import OneDNNLinear, convert_linear, onednn_linear, onednn_linear_binary
from .mask_logits import mask_logits
from .winograd import winograd_conv3x3, winograd_weight

__all__ = ['FusedMultiheadAttention', 'convert_multihead_attention',
           'FastMultiScaleDeformableAttention', 'convert_deformable_attention',
           'multi_scale_deformable_attn_cpu', 'multi_scale_deformable_attn_grid_sample',
           'sample_at_pixels',
           'mask_logits', 'OneDNNLinear', 'convert_linear', 'onednn_linear', 'onednn_linear_binary',
           'InferenceCache',
           'inference_cache',
           'convert_fast_layers', 'flop_formulas', 'winograd_conv3x3', 'winograd_weight',
           'FoldedConv2d', 'FoldedBatchNorm2d', 'fold_batch_norm', 'convert_batch_norm_folding',
           'FastConv2d', 'conv2d_activation', 'convert_conv2d',
           'FastMSDeformAttnPixelDecoder', 'convert_pixel_decoder']

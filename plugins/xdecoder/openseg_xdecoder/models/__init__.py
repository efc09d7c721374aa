"""X-Decoder's model parts."""
from .attention_masks import TASKS, self_attention_mask
from .focalnet import FocalNet
from .transformer_encoder_fpn import TransformerEncoderFPN
from .xdecoder import XDecoder
from .xdecoder_head import XDecoderHead
from .xdecoder_query_decoder import XDecoderQueryDecoder

__all__ = ['TASKS', 'self_attention_mask', 'FocalNet', 'TransformerEncoderFPN', 'XDecoder',
           'XDecoderHead', 'XDecoderQueryDecoder']

"""X-Decoder's model parts."""
from .attention_masks import TASKS, self_attention_mask
from .xdecoder import XDecoder
from .xdecoder_head import XDecoderHead
from .xdecoder_query_decoder import XDecoderQueryDecoder

__all__ = ['TASKS', 'self_attention_mask', 'XDecoder', 'XDecoderHead', 'XDecoderQueryDecoder']

"""X-Decoder's model parts."""
from .attention_masks import TASKS, self_attention_mask
from .focalnet import FocalNet
from .tasks import CaptioningTask, GenericTask, ReferringTask
from .transformer_encoder_fpn import TransformerEncoderFPN
from .xdecoder import Features, XDecoder
from .xdecoder_head import XDecoderHead
from .xdecoder_query_decoder import XDecoderOutput, XDecoderQueryDecoder

__all__ = ['TASKS', 'self_attention_mask', 'FocalNet', 'TransformerEncoderFPN', 'XDecoder',
           'Features', 'XDecoderHead', 'XDecoderQueryDecoder', 'XDecoderOutput', 'GenericTask',
           'ReferringTask', 'CaptioningTask']

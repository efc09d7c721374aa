from .masked_attention_decoder import MaskedAttentionQueryDecoder

__all__ = ['MaskedAttentionQueryDecoder']

from .bi_attention import BiAttentionBlock, BiMultiHeadAttention

__all__ = ['BiAttentionBlock', 'BiMultiHeadAttention']

"""X-Decoder's decoder: latent queries (object + one global) and text queries."""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor, nn

from openseg_core.models.interfaces import implements
from openseg_core.models.mask_classification import (MaskedAttentionQueryDecoder,
                                                      QueryDecoderOutput)
from openseg_core.models.mask_classification.query_decoder import TINY_DECODER

from ..registry import MODELS
from .attention_masks import self_attention_mask


@dataclass
class XDecoderOutput(QueryDecoderOutput):
    """The core decoder's output (``query_embeds`` / ``mask_logits`` of the ``m - 1`` object
    queries), plus per prediction the global query's ``(B, C)`` and the text queries'
    ``(B, n, C)`` outputs (``n = 0`` without text)."""
    global_embeds: List[Tensor] = None
    text_embeds: List[Tensor] = None


@implements('mask_classification.QueryDecoder',
            example=dict(num_queries=6, text_dims=16, embed_dims=16, memory_channels=16,
                         transformer_decoder=TINY_DECODER),
            inputs=dict(channels=16))
@MODELS.register_module()
class XDecoderQueryDecoder(MaskedAttentionQueryDecoder):
    """The core's masked-attention decoder with X-Decoder's query sets and Fig. 4 rules.

    The core decoder already runs extra (mask-less) queries with full cross-attention and takes
    the self-attention mask as an input; this class adds the global image query, projects and
    positions text queries, and builds the mask from the task.

    Args:
        num_queries: ``m`` latent queries, the last being the global image query; the first
            ``m - 1`` predict masks.
        text_dims: width of the text queries given to :meth:`forward` (the text encoder's
            token width); projected to ``embed_dims`` when different.
        context_length: longest caption, for the captioning position embeddings.
        **kwargs: :class:`MaskedAttentionQueryDecoder` arguments.
    """

    def __init__(self, num_queries: int = 101, text_dims: int = 512,
                 context_length: int = 77, **kwargs):
        if num_queries < 2:
            raise ValueError('X-Decoder needs at least one object query and the global query')
        super().__init__(num_queries=num_queries - 1, **kwargs)
        embed_dims = self.decoder.embed_dims
        self.num_latent = num_queries
        self.global_query_feat = nn.Embedding(1, embed_dims)
        self.global_query_pos = nn.Embedding(1, embed_dims)
        self.text_proj = nn.Linear(text_dims, embed_dims) if text_dims != embed_dims \
            else nn.Identity()
        self.caption_pos = nn.Embedding(context_length, embed_dims)

    def forward(self, mask_features: Tensor, memories: List[Tensor], task: str = 'generic',
                text_queries: Optional[Tensor] = None, text_padding: Optional[Tensor] = None,
                text_region: Optional[Tensor] = None) -> XDecoderOutput:
        """Decode for one task.

        Args:
            mask_features: ``(B, C, H/4, W/4)``.
            memories: pixel-decoder memories, low to high resolution.
            task: ``generic``, ``retrieval``, ``referring`` or ``captioning``.
            text_queries: ``(B, n, text_dims)``: the text encoder's token features of the
                referring phrase, or of the caption so far (causal).
            text_padding: ``(B, n)`` bool, True at padding.
            text_region: ``(B, H', W')`` in ``[0, 1]``: text queries cross-attend only inside
                (referring captioning).

        Returns:
            :class:`XDecoderOutput` with ``num_layers + 1`` predictions.
        """
        batch = mask_features.shape[0]
        extra = self.global_query_feat.weight[None].expand(batch, -1, -1)
        extra_pos = self.global_query_pos.weight[None].expand(batch, -1, -1)
        num_text = 0
        if text_queries is not None:
            num_text = text_queries.shape[1]
            if task == 'captioning' and num_text > self.caption_pos.num_embeddings:
                raise ValueError(f'caption of {num_text} tokens is longer than the context '
                                 f'length {self.caption_pos.num_embeddings}')
            text = self.text_proj(text_queries)
            text_pos = (self.caption_pos.weight[:num_text][None].expand(batch, -1, -1)
                        if task == 'captioning' else torch.zeros_like(text))
            extra = torch.cat([extra, text], dim=1)
            extra_pos = torch.cat([extra_pos, text_pos], dim=1)
        attn_mask = self_attention_mask(task, self.num_latent, num_text, text_padding,
                                        device=mask_features.device)
        attn_mask = (attn_mask[0] if attn_mask.shape[0] == 1
                     else attn_mask.repeat_interleave(self.num_heads, dim=0))
        out = super().forward(mask_features, memories, extra_queries=extra,
                              self_attn_mask=attn_mask, extra_query_pos=extra_pos,
                              extra_region=text_region)
        return XDecoderOutput(query_embeds=out.query_embeds, mask_logits=out.mask_logits,
                              extra_embeds=out.extra_embeds,
                              global_embeds=[q[:, 0] for q in out.extra_embeds],
                              text_embeds=[q[:, 1:] for q in out.extra_embeds])

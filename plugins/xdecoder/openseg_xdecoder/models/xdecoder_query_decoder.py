"""X-Decoder's decoder: latent queries (object + one global) and text queries."""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openseg_core.models.interfaces import implements
from openseg_core.models.layers import inference_cache, mask_logits, onednn_linear
from openseg_core.models.mask_classification import (MaskedAttentionQueryDecoder,
                                                      QueryDecoderOutput)
from openseg_core.models.mask_classification.query_decoder import TINY_DECODER, repeat_over_heads

from ..registry import MODELS
from .attention_masks import self_attention_mask

#: What the global query is (``global_query``).
GLOBAL_QUERY_MODES = ('image', 'reweighted')
#: How referring phrases condition the decoder (``referring``).
REFERRING_MODES = ('text_queries', 'grounding_copies')
#: Positions of caption text queries (``caption_query_pos``).
CAPTION_POS_MODES = ('learned', 'token_and_learned')


@dataclass
class XDecoderOutput(QueryDecoderOutput):
    """The core decoder's output (``query_embeds`` / ``mask_logits`` of the ``m - 1`` object
    queries), plus, per prediction:

    - ``global_embeds (B, C)``: the global query's output (re-weighted with
      ``global_query='reweighted'``), and its ``global_mask_logits (B, H/4, W/4)`` there;
    - ``text_embeds (B, n, C)``: the text queries' outputs (captioning, referring with
      ``text_queries``);
    - ``copy_embeds (B, m - 1, C)`` / ``copy_mask_logits``: the grounding copies
      (referring with ``grounding_copies``).
    """
    global_embeds: List[Tensor] = None
    global_mask_logits: Optional[List[Tensor]] = None
    text_embeds: Optional[List[Tensor]] = None
    copy_embeds: Optional[List[Tensor]] = None
    copy_mask_logits: Optional[List[Tensor]] = None


@dataclass
class CaptionContext:
    """What a caption token reads besides the earlier tokens, per decoder layer, computed once
    per image by :meth:`XDecoderQueryDecoder.caption_context` (``B`` images, ``k`` beams,
    ``N = B * k`` rows, ``h`` heads, ``d = C / h``)."""
    #: per layer ``(N, h, m, d)`` self-attention keys / values of the ``m`` latent queries
    latent_kv: List[Tuple[Tensor, Tensor]]
    #: per layer ``(B, h, h_i * w_i, d)`` cross-attention keys / values of its memory
    memory_kv: List[Tuple[Tensor, Tensor]]
    #: per layer ``(B, 1, 1, h_i * w_i)`` True where text may look (referring captioning), or
    #: None (everywhere)
    allowed: List[Optional[Tensor]]
    beams: int


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """``(B, L, C)`` -> ``(B, heads, L, C / heads)``."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _in_proj(attn: nn.MultiheadAttention, x: Tensor, part: int) -> Tensor:
    """torch's attention input projection ``part`` (0 query, 1 key, 2 value) of ``x``."""
    dims = attn.embed_dim
    bias = None if attn.in_proj_bias is None else attn.in_proj_bias[part * dims:(part + 1) * dims]
    return onednn_linear(x, attn.in_proj_weight[part * dims:(part + 1) * dims], bias,
                         inference_cache(attn))


def _attend(attn: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
            allowed: Optional[Tensor] = None) -> Tensor:
    """``(B, h, L, d)`` projected query over ``(B, h, S, d)`` keys / values -> ``(B, L, C)``
    after torch's output projection (eval mode: no dropout)."""
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed)
    return onednn_linear(out.transpose(1, 2).reshape(query.shape[0], query.shape[2], -1),
                         attn.out_proj.weight, attn.out_proj.bias)


@implements('mask_classification.QueryDecoder',
            example=dict(num_queries=6, text_dims=16, embed_dims=16, memory_channels=16,
                         transformer_decoder=TINY_DECODER),
            inputs=dict(channels=16))
@implements('mask_classification.QueryDecoder',
            example=dict(num_queries=6, text_dims=16, embed_dims=16, memory_channels=16,
                         transformer_decoder=TINY_DECODER, global_query='reweighted',
                         referring='grounding_copies', caption_query_pos='token_and_learned',
                         attn_mask_interpolation='bicubic_antialias'),
            inputs=dict(channels=16))
@MODELS.register_module()
class XDecoderQueryDecoder(MaskedAttentionQueryDecoder):
    """The core's masked-attention decoder with X-Decoder's query sets and Fig. 4 rules.

    Queries ``[object (m-1) | global (1) | text (n)]`` (referring with grounding copies:
    ``[object | global | copies (m-1)]`` plus the phrase tokens, which join self-attention and
    the FFN only). Every layer is mmdet's ``Mask2FormerTransformerDecoderLayer`` (cross-attn,
    self-attn, FFN) run part by part, so tokens can join after the cross-attention.

    openseg's defaults follow the paper where the official code differs; each official
    behaviour is one field (all set in ``xdecoder_focalt_paper.py``, the official-numerics
    mode; measured effects in docs/plugins/xdecoder.md):

    Args:
        num_queries: ``m`` latent queries, the last being the global image query; the first
            ``m - 1`` predict masks.
        text_dims: width of the text queries given to :meth:`forward` (the text encoder's
            projected token features); projected to ``embed_dims`` when different.
        context_length: longest caption, for the captioning position embeddings.
        global_query: ``'image'`` (its own output is the image embedding; it cross-attends
            the whole image) or ``'reweighted'`` (official: its output is replaced, at every
            prediction, by the object outputs averaged with softmax weights of their cosine to
            it; that has a mask, which restricts the global query's next cross-attention, and
            it is one more segment candidate).
        referring: ``'text_queries'`` (the phrase tokens are text queries that cross-attend
            the image; object queries attend them) or ``'grounding_copies'`` (official: copies
            of the object queries attend the phrase tokens, which never attend the image and
            keep their first features as positions; the copies predict the phrase's mask; the
            latent queries stay as in the generic pass).
        caption_query_pos: ``'learned'`` (the learned caption positions) or
            ``'token_and_learned'`` (official: the token feature plus the learned position).
        grounding_first_copy_open: official quirk (``grounding_copies``): the first copy
            cross-attends the whole image at every layer (the official code writes the "global
            query sees everything" rule one row too far when copies are present).
        **kwargs: :class:`MaskedAttentionQueryDecoder` arguments (``attn_mask_interpolation``:
            official ``'bicubic_antialias'``).
    """

    def __init__(self, num_queries: int = 101, text_dims: int = 512,
                 context_length: int = 77, global_query: str = 'image',
                 referring: str = 'text_queries', caption_query_pos: str = 'learned',
                 grounding_first_copy_open: bool = True, **kwargs):
        if num_queries < 2:
            raise ValueError('X-Decoder needs at least one object query and the global query')
        for name, value, choices in (('global_query', global_query, GLOBAL_QUERY_MODES),
                                     ('referring', referring, REFERRING_MODES),
                                     ('caption_query_pos', caption_query_pos,
                                      CAPTION_POS_MODES)):
            if value not in choices:
                raise ValueError(f'{name} must be one of {choices}, not {value!r}')
        super().__init__(num_queries=num_queries - 1, **kwargs)
        embed_dims = self.decoder.embed_dims
        self.num_latent = num_queries
        self.global_query = global_query
        self.referring = referring
        self.caption_query_pos = caption_query_pos
        self.grounding_first_copy_open = grounding_first_copy_open
        self.global_query_feat = nn.Embedding(1, embed_dims)
        self.global_query_pos = nn.Embedding(1, embed_dims)
        self.text_proj = nn.Linear(text_dims, embed_dims) if text_dims != embed_dims \
            else nn.Identity()
        self.caption_pos = nn.Embedding(context_length, embed_dims)

    def latent_queries(self, batch: int) -> Tuple[Tensor, Tensor]:
        """``(B, Q + 1, C)`` latent queries (the mask queries and the global one) and their
        learned positions."""
        queries = torch.cat([self.query_feat.weight, self.global_query_feat.weight])
        query_pos = torch.cat([self.query_pos.weight, self.global_query_pos.weight])
        return queries[None].expand(batch, -1, -1), query_pos[None].expand(batch, -1, -1)

    def _heads(self, queries: Tensor, mask_features: Tensor, attn_size, num_copies: int,
               text_region: Optional[Tensor], resized_features: Optional[dict] = None) -> dict:
        """One prediction: normed outputs, masks of object / global / copy queries, and the
        cross-attention mask ``(B * heads, Q, h' * w')`` for the next layer (none with
        ``attn_size=None``, the last prediction).

        With ``resized_features`` (:meth:`resized_mask_features`) and an ``attn_size``, the
        masks are computed at the attention size only, for the attention mask, and are
        ``None`` in the result."""
        normed = self.decoder.post_norm(queries)
        objects, glob = self.num_queries, self.num_queries
        copies = slice(self.num_latent, self.num_latent + num_copies)
        global_embed = normed[:, glob]
        mask_queries = [normed[:, :objects]]
        if self.global_query == 'reweighted':
            unit = normed / (normed.norm(dim=-1, keepdim=True) + 1e-7)
            weights = torch.einsum('bc,bqc->bq', unit[:, glob], unit[:, :objects]).softmax(-1)
            global_embed = torch.einsum('bq,bqc->bc', weights, normed[:, :objects])
            mask_queries.append(global_embed[:, None])
        if num_copies:
            mask_queries.append(normed[:, copies])
        embeds = self.mask_embed(torch.cat(mask_queries, 1))
        at_attn_size = resized_features is not None and attn_size is not None
        features = resized_features[tuple(attn_size)] if at_attn_size else mask_features
        masks = mask_logits(embeds, features)
        out = dict(normed=normed, global_embed=global_embed)
        if not at_attn_size:  # the prediction's own masks, at H/4
            out['mask_logits'] = masks[:, :objects]
            if self.global_query == 'reweighted':
                out['global_mask'] = masks[:, objects]
            if num_copies:
                out['copy_masks'] = masks[:, -num_copies:]
        if attn_size is None:
            return out
        blocked = self.blocked_pixels(masks, attn_size)
        rows = [blocked[:, :objects]]
        open_rows = blocked.new_zeros(blocked.shape[0], 1, blocked.shape[2])
        rows.append(blocked[:, objects:objects + 1] if self.global_query == 'reweighted'
                    else open_rows)
        num_text = queries.shape[1] - self.num_latent - num_copies
        if num_copies:
            copy_rows = blocked[:, -num_copies:].clone()
            if self.grounding_first_copy_open:
                copy_rows[:, 0] = False
            rows.append(copy_rows)
        if num_text:
            text_rows = open_rows.expand(-1, num_text, -1)
            if text_region is not None:
                # Referring captioning: the text queries see only the grounded region.
                text_rows = self.blocked_outside(text_region, attn_size)[:, None].expand(
                    -1, num_text, -1)
            rows.append(text_rows)
        out['attn'] = repeat_over_heads(torch.cat(rows, 1), self.num_heads)
        return out

    # ------------------------------------------------------------------ cached captioning
    # Under the captioning mask (Fig. 4) the latent queries never attend text, so their
    # states at every layer are the same whatever the caption; and text token t attends only
    # the latents and tokens <= t (every other operation is row-wise). Decoding token by token
    # then needs, per layer, the latents' self-attention keys / values and the memories'
    # cross-attention keys / values (both once per image) and the earlier tokens' keys /
    # values (one more per step): only the newest token goes through the layers.

    def supports_caption_cache(self) -> bool:
        """Whether :meth:`caption_step` applies: eval mode (it skips dropout) and torch's
        plain multi-head attention in every layer (no extra key bias, no zero attention)."""
        if self.training:
            return False
        for layer in self.decoder.layers:
            for attn in (layer.cross_attn.attn, layer.self_attn.attn):
                if not (isinstance(attn, nn.MultiheadAttention) and attn._qkv_same_embed_dim
                        and attn.bias_k is None and not attn.add_zero_attn):
                    return False
        return True

    @torch.no_grad()
    def caption_context(self, mask_features: Tensor, memories: List[Tensor],
                        text_region: Optional[Tensor] = None,
                        beams: int = 1) -> CaptionContext:
        """Run the latent queries alone (as :meth:`forward` runs them under ``captioning``:
        same cross-attention masks, same self-attention rules) and keep, per layer, what a
        text query reads: the latents' self-attention keys / values, the memory's
        cross-attention keys / values and the region's attention mask.

        Args:
            mask_features, memories: of ``B`` images (not repeated per beam).
            text_region: ``(B, H', W')`` in ``[0, 1]`` (referring captioning).
            beams: rows per image in the :meth:`caption_step` calls (beam search).
        """
        batch = mask_features.shape[0]
        keys, key_pos = self.memory_keys(memories)
        queries, query_pos = self.latent_queries(batch)
        latent_mask = self_attention_mask('retrieval', self.num_latent,
                                          device=mask_features.device)[0]
        # Only attention masks are needed: masks at the memories' sizes, not at H/4.
        resized = self.resized_mask_features(mask_features,
                                             [memory.shape[-2:] for memory in memories])
        cross_mask = self._heads(queries, mask_features, memories[0].shape[-2:], 0, None,
                                 resized)['attn']
        context = CaptionContext([], [], [], beams)
        heads, last = self.num_heads, len(self.decoder.layers) - 1
        for index, layer in enumerate(self.decoder.layers):
            level = index % self.num_feature_levels
            cross = layer.cross_attn.attn
            context.memory_kv.append(
                (_split_heads(_in_proj(cross, keys[level] + key_pos[level], 1), heads),
                 _split_heads(_in_proj(cross, keys[level], 2), heads)))
            context.allowed.append(None if text_region is None else ~self.blocked_outside(
                text_region, memories[level].shape[-2:])[:, None, None])
            queries = layer.norms[0](layer.cross_attn(
                query=queries, key=keys[level], value=keys[level], query_pos=query_pos,
                key_pos=key_pos[level], attn_mask=cross_mask))
            own = layer.self_attn.attn
            context.latent_kv.append(tuple(
                _split_heads(_in_proj(own, x, part), heads).repeat_interleave(beams, 0)
                for x, part in ((queries + query_pos, 1), (queries, 2))))
            if index == last:  # the text reads nothing of the latents' last outputs
                break
            queries = layer.norms[1](layer.self_attn(query=queries, key=queries, value=queries,
                                                     query_pos=query_pos, key_pos=query_pos,
                                                     attn_mask=latent_mask))
            queries = layer.norms[2](layer.ffn(queries))
            next_size = memories[(index + 1) % self.num_feature_levels].shape[-2:]
            cross_mask = self._heads(queries, mask_features, next_size, 0, None,
                                     resized)['attn']
        return context

    @torch.no_grad()
    def caption_step(self, text_queries: Tensor, context: CaptionContext,
                     past: Optional[List[Tuple[Tensor, Tensor]]] = None
                     ) -> Tuple[Tensor, List[Tuple[Tensor, Tensor]]]:
        """Decode the next ``s`` caption tokens given the cache of the ``t`` earlier ones.

        Args:
            text_queries: ``(N, s, text_dims)`` the new tokens' text queries, ``N = B * k``
                rows, the ``k`` beams of an image in a row.
            context: :meth:`caption_context` of the ``B`` images.
            past: per layer, the self-attention keys / values ``(N, h, m + t, d)`` of the
                latents and the earlier tokens, as returned by the previous call (None at
                the first).

        Returns:
            ``(N, s, C)`` normed outputs of the new tokens (:meth:`forward`'s last
            ``text_embeds`` at those positions, to float rounding) and the ``past`` that
            covers ``t + s`` tokens.
        """
        rows, length = text_queries.shape[:2]
        start = 0 if past is None else past[0][0].shape[2] - self.num_latent
        if start + length > self.caption_pos.num_embeddings:
            raise ValueError(f'caption of {start + length} tokens is longer than the context '
                             f'length {self.caption_pos.num_embeddings}')
        heads, beams = self.num_heads, context.beams
        text = self.text_proj(text_queries)
        text_pos = self.caption_pos.weight[start:start + length][None].expand(rows, -1, -1)
        if self.caption_query_pos == 'token_and_learned':
            text_pos = text + text_pos
        allowed_self = None  # one new token sees all it is given
        if length > 1:
            allowed_self = torch.ones(length, self.num_latent + start + length,
                                      dtype=torch.bool, device=text.device).tril(
                                          self.num_latent + start)
        x, new_past = text, []
        for index, layer in enumerate(self.decoder.layers):
            # Cross-attention: the beams of an image share its memory, so its k * s new
            # tokens are one block of queries over its keys (no per-beam copies of them).
            cross = layer.cross_attn.attn
            key, value = context.memory_kv[index]
            query = _split_heads(_in_proj(cross, x + text_pos, 0).reshape(
                rows // beams, beams * length, -1), heads)
            out = _attend(cross, query, key, value, context.allowed[index])
            x = layer.norms[0](x + out.reshape(rows, length, -1))
            # Self-attention over [latents, earlier tokens, new tokens].
            own = layer.self_attn.attn
            cached = context.latent_kv[index] if past is None else past[index]
            keys = torch.cat([cached[0], _split_heads(_in_proj(own, x + text_pos, 1), heads)],
                             dim=2)
            values = torch.cat([cached[1], _split_heads(_in_proj(own, x, 2), heads)], dim=2)
            new_past.append((keys, values))
            query = _split_heads(_in_proj(own, x + text_pos, 0), heads)
            x = layer.norms[1](x + _attend(own, query, keys, values, allowed_self))
            x = layer.norms[2](layer.ffn(x))
        return self.decoder.post_norm(x), new_past

    def forward(self, mask_features: Tensor, memories: List[Tensor], task: str = 'generic',
                text_queries: Optional[Tensor] = None, text_padding: Optional[Tensor] = None,
                text_region: Optional[Tensor] = None,
                intermediate_masks: bool = True) -> XDecoderOutput:
        """Decode for one task.

        Args:
            mask_features: ``(B, C, H/4, W/4)``.
            memories: pixel-decoder memories, low to high resolution.
            task: ``generic``, ``retrieval``, ``referring`` or ``captioning``.
            text_queries: ``(B, n, text_dims)``: the projected token features of the referring
                phrase, or of the caption so far (causal).
            text_padding: ``(B, n)`` bool, True at padding.
            text_region: ``(B, H', W')`` in ``[0, 1]``: text queries cross-attend only inside
                (referring captioning).
            intermediate_masks: ``False`` (inference): only the last prediction's masks are
                computed at ``H/4``, the earlier ones are ``None``; their attention masks come
                from the mask features resized to each memory's size, the same masks to
                float rounding (the core's :meth:`resized_mask_features`).

        Returns:
            :class:`XDecoderOutput` with ``num_layers + 1`` predictions.
        """
        batch = mask_features.shape[0]
        keys, key_pos = self.memory_keys(memories)
        queries, query_pos = self.latent_queries(batch)
        grounding = task == 'referring' and self.referring == 'grounding_copies'
        num_text, num_copies, side, side_pos = 0, 0, None, None
        if text_queries is not None:
            num_text = text_queries.shape[1]
            if task == 'captioning' and num_text > self.caption_pos.num_embeddings:
                raise ValueError(f'caption of {num_text} tokens is longer than the context '
                                 f'length {self.caption_pos.num_embeddings}')
            text = self.text_proj(text_queries)
            if grounding:
                # The copies cross-attend; the phrase tokens join the self-attention only,
                # positioned by their first features.
                num_copies = self.num_queries
                queries = torch.cat([queries, queries[:, :num_copies]], dim=1)
                query_pos = torch.cat([query_pos, query_pos[:, :num_copies]], dim=1)
                side, side_pos = text, text
            else:
                if task == 'captioning':
                    text_pos = self.caption_pos.weight[:num_text][None].expand(batch, -1, -1)
                    if self.caption_query_pos == 'token_and_learned':
                        text_pos = text + text_pos
                else:
                    text_pos = torch.zeros_like(text)
                queries = torch.cat([queries, text], dim=1)
                query_pos = torch.cat([query_pos, text_pos], dim=1)
        attn_mask = self_attention_mask('grounding' if grounding else task, self.num_latent,
                                        num_text, text_padding, device=mask_features.device)
        attn_mask = (attn_mask[0] if attn_mask.shape[0] == 1
                     else attn_mask.repeat_interleave(self.num_heads, dim=0))

        num_layers = len(self.decoder.layers)
        resized = None
        if not intermediate_masks and num_layers:
            resized = self.resized_mask_features(mask_features,
                                                 [memory.shape[-2:] for memory in memories])
        predictions = [self._heads(queries, mask_features,
                                   memories[0].shape[-2:] if num_layers else None, num_copies,
                                   text_region, resized)]
        for index, layer in enumerate(self.decoder.layers):
            level = index % self.num_feature_levels
            queries = layer.norms[0](layer.cross_attn(
                query=queries, key=keys[level], value=keys[level], query_pos=query_pos,
                key_pos=key_pos[level], attn_mask=predictions[-1]['attn']))
            if side is not None:
                joined = torch.cat([queries, side], dim=1)
                joined_pos = torch.cat([query_pos, side_pos], dim=1)
            else:
                joined, joined_pos = queries, query_pos
            joined = layer.norms[1](layer.self_attn(query=joined, key=joined, value=joined,
                                                    query_pos=joined_pos, key_pos=joined_pos,
                                                    attn_mask=attn_mask))
            joined = layer.norms[2](layer.ffn(joined))
            if side is not None:
                queries, side = joined[:, :-num_text], joined[:, -num_text:]
            else:
                queries = joined
            next_size = (None if index == num_layers - 1 else
                         memories[(index + 1) % self.num_feature_levels].shape[-2:])
            predictions.append(self._heads(queries, mask_features, next_size, num_copies,
                                           text_region, resized))

        objects, text_start = self.num_queries, self.num_latent
        out = XDecoderOutput(
            query_embeds=[p['normed'][:, :objects] for p in predictions],
            mask_logits=[p.get('mask_logits') for p in predictions],
            extra_embeds=[p['normed'][:, objects:] for p in predictions],
            global_embeds=[p['global_embed'] for p in predictions])
        if self.global_query == 'reweighted':
            out.global_mask_logits = [p.get('global_mask') for p in predictions]
        if num_copies:
            out.copy_embeds = [p['normed'][:, text_start:] for p in predictions]
            out.copy_mask_logits = [p.get('copy_masks') for p in predictions]
        elif num_text:
            out.text_embeds = [p['normed'][:, text_start:] for p in predictions]
        return out

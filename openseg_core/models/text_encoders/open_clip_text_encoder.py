"""A text encoder from open_clip: any of its architectures, weights from a local file."""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.registry import MODELS
from openseg_core.utils.checkpoint import load_state_dict_file

from ..base import FrozenPartsMixin
from ..interfaces import implements
from ..layers import onednn_linear

DEFAULT_TEMPLATES = ('a photo of a {}.',)


def _openai_imagenet_templates():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return [template('{}') for template in OPENAI_IMAGENET_TEMPLATES]


#: Which templates encode class names in training (``train_templates``).
TRAIN_TEMPLATES = ('all', 'sample')
#: Named template sets a config may list among its templates.
TEMPLATE_SETS = dict(openai_imagenet=_openai_imagenet_templates)


@dataclass
class TextEncoderOutput:
    """``N`` texts encoded, ``L`` = the longest text of the batch in tokens (start and end
    tokens included)."""
    #: ``(N, L, W)`` per-token features (after the final LayerNorm).
    token_feats: Tensor
    #: ``(N, D)`` the end token's feature, projected (not normalised).
    pooled: Tensor
    #: ``(N, L)`` token ids; positions past a text's end hold the tokenizer's padding.
    token_ids: Tensor
    #: ``(N, L)`` bool, True on a text's own tokens (from its length, not from token ids).
    mask: Tensor

    @property
    def lengths(self) -> Tensor:
        """``(N,)`` tokens per text, start and end included."""
        return self.mask.sum(1)


TINY_TOWER = dict(model_name='ViT-B-16', embed_dim=8, text_cfg=dict(width=16, heads=2, layers=1))


@implements('TextEncoder', 'language.CausalTextEncoder', example=TINY_TOWER)
@MODELS.register_module()
class OpenCLIPTextEncoder(FrozenPartsMixin, BaseModule):
    """CLIP's causal text transformer with the CLIP BPE tokenizer.

    Args:
        model_name: an open_clip architecture (``open_clip.list_models()``), e.g. ``ViT-B-16``;
            its text tower is built. Ignored for the tower's shape when ``text_cfg`` is given.
        text_cfg: overrides of open_clip's ``CLIPTextCfg`` (``width``, ``layers``, ``heads``,
            ``context_length``...) to build a smaller tower, e.g. for tests.
        embed_dim: width ``D`` of the pooled output; default the architecture's.
        pretrained: path of a local open_clip/OpenAI CLIP checkpoint (full model or text tower);
            ``None`` keeps the random initialisation. Nothing is ever downloaded.
        templates: prompt templates for class names; several are averaged (prompt ensembling).
            ``'openai_imagenet'`` stands for open_clip's 80 ImageNet templates of CLIP.
        frozen: freeze the weights (openseg's frozen-part convention: eval mode, no gradients,
            out of the optimizer; loaded from ``pretrained``, the tower is left out of
            checkpoints and reloaded from that file). Class embeddings are then cached.
        train_templates: which templates encode the class names while gradients flow
            through a trained tower: ``'all'`` (averaged, as at inference) or ``'sample'``
            (one per name, drawn at random each call: official X-Decoder's training, whose
            ``prompt_engineering(..., topk=10000)`` picks one of its templates). With 81
            templates, ``'all'`` back-propagates through 81 times the sequences: 134 COCO names
            took more than this project's 23 GB machines have at batch 2.
        layer_norm_eps: epsilon of every LayerNorm of the tower (open_clip's 1e-5; some
            official checkpoints were trained with another, e.g. X-Decoder's 1e-12).
    """

    def __init__(self, model_name: str = 'ViT-B-16', text_cfg: Optional[dict] = None,
                 embed_dim: Optional[int] = None, pretrained: Optional[str] = None,
                 templates: Sequence[str] = DEFAULT_TEMPLATES, frozen: bool = True,
                 train_templates: str = 'all', layer_norm_eps: Optional[float] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        import open_clip
        from open_clip.model import _build_text_tower
        from open_clip.tokenizer import SimpleTokenizer

        arch = open_clip.get_model_config(model_name)
        if arch is None:
            raise ValueError(f'unknown open_clip architecture {model_name!r}; choose one of '
                             'open_clip.list_models()')
        cfg = dict(arch['text_cfg'], **(text_cfg or {}))
        cfg['output_tokens'] = True
        self.embed_dim = embed_dim or arch['embed_dim']
        self.tower = _build_text_tower(self.embed_dim, cfg,
                                       quick_gelu=arch.get('quick_gelu', False))
        if layer_norm_eps is not None:
            for module in self.tower.modules():
                if isinstance(module, nn.LayerNorm):
                    module.eps = layer_norm_eps
        self.context_length = self.tower.context_length
        self.tokenizer = SimpleTokenizer(context_length=self.context_length)
        templates = [t for name in templates for t in TEMPLATE_SETS.get(name, lambda: [name])()]
        if not templates or any('{}' not in t for t in templates):
            raise ValueError(f'every prompt template needs a "{{}}" slot, got {templates!r}')
        self.templates = tuple(templates)
        if train_templates not in TRAIN_TEMPLATES:
            raise ValueError(f'train_templates must be one of {TRAIN_TEMPLATES}, '
                             f'not {train_templates!r}')
        self.train_templates = train_templates
        self.frozen = frozen
        self._vocab_cache: Dict[tuple, Tensor] = {}
        # Cached class embeddings were computed with the weights being replaced.
        self.register_load_state_dict_post_hook(lambda module, keys: module._vocab_cache.clear())
        if pretrained is not None:
            self._load_pretrained(pretrained)
        if frozen:
            self.freeze('tower', source=pretrained)

    def _load_pretrained(self, path: str) -> None:
        state = load_state_dict_file(path, what='open_clip text encoder weights')
        state = state.get('state_dict', state)
        tower_keys = set(self.tower.state_dict())
        # Full CLIP checkpoints keep the text tower at the top level beside ``visual.*``.
        text_state = {k.removeprefix('module.'): v for k, v in state.items()
                      if k.removeprefix('module.') in tower_keys}
        missing = tower_keys - set(text_state)
        if missing:
            raise ValueError(f'{path}: not a checkpoint of this text tower; missing '
                             f'{sorted(missing)[:5]} (check model_name / text_cfg)')
        self.tower.load_state_dict(text_state)

    @property
    def token_embedding_table(self) -> Tensor:
        """``(V, D_tok)`` token embeddings, shared with captioning heads."""
        return self.tower.token_embedding.weight

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """``(N, L)`` token ids (``L`` = context length), padded with 0 (which is also the
        id of "!": find a text's end with :meth:`lengths`, never by comparing to 0)."""
        return self.tokenizer(list(texts)).to(self.token_embedding_table.device)

    def lengths(self, token_ids: Tensor) -> Tensor:
        """``(N,)`` tokens per row of ``token_ids``, start and end tokens included: up to the
        first end token (the tokenizer puts one last in a truncated text)."""
        is_end = token_ids == self.end_token_id
        return torch.where(is_end.any(1), is_end.int().argmax(1) + 1,
                           torch.full_like(is_end[:, 0], token_ids.shape[1], dtype=torch.long))

    @property
    def start_token_id(self) -> int:
        return self.tokenizer.sot_token_id

    @property
    def end_token_id(self) -> int:
        return self.tokenizer.eot_token_id

    def _run_tower(self, token_ids: Tensor):
        """``(N, n)`` ids, ``n <= context length`` -> ``pooled (N, D)``, ``tokens (N, n, W)``.

        open_clip always runs the full context (77 positions) because its causal mask has that
        size; the tower is causal, so running only the ``n`` positions a batch uses gives the
        same features, about ``77 / n`` times faster (a 10,000-name vocabulary of short
        prompts: minutes -> seconds). Towers with a class token or a padding mask take
        open_clip's own path.
        """
        tower, length = self.tower, token_ids.shape[1]
        if length > self.context_length:
            raise ValueError(f'{length} tokens exceed the context length {self.context_length}')
        if (tower.cls_emb is not None or getattr(tower, 'use_pad_mask', False)
                or tower.pool_type != 'argmax' or tower.attn_mask is None):
            pooled, tokens = tower(F.pad(token_ids, (0, self.context_length - length)))
            return pooled, tokens[:, :length]
        x = tower.token_embedding(token_ids) + tower.positional_embedding[:length]
        x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask[:length, :length]))
        pooled = x[torch.arange(len(x), device=x.device), token_ids.argmax(dim=-1)]
        return self.project(pooled), x

    def project(self, feats: Tensor) -> Tensor:
        """``(..., W)`` features -> ``(..., D)`` through the tower's text projection, the map
        that turns the end token's feature into the pooled embedding (X-Decoder's official
        model also applies it to every token feature it uses as a query)."""
        projection = self.tower.text_projection
        if isinstance(projection, torch.nn.Linear):
            return projection(feats)
        return feats if projection is None else feats @ projection

    def encode_ids(self, token_ids: Tensor) -> Tensor:
        """Run the tower on ``(N, n)`` ids (no end token needed) -> ``(N, n, W)`` token
        features. Causal: position ``t`` depends on the first ``t + 1`` ids only, so these are
        the text queries of a captioning decoder."""
        return self._run_tower(token_ids)[1]

    @property
    def supports_incremental(self) -> bool:
        """Whether :meth:`encode_next_ids` can run this tower: the causal argmax-pooled tower
        of plain ``ResidualAttentionBlock`` s (every CLIP text tower of open_clip's standard
        architectures; not the CoCa / class-token or padding-mask variants)."""
        from open_clip.transformer import ResidualAttentionBlock
        tower = self.tower
        if (tower.cls_emb is not None or getattr(tower, 'use_pad_mask', False)
                or tower.pool_type != 'argmax' or tower.attn_mask is None):
            return False
        return all(type(block) is ResidualAttentionBlock and not hasattr(block, 'ln_1_kv')
                   and block.attn._qkv_same_embed_dim and block.attn.bias_k is None
                   and not block.attn.add_zero_attn
                   for block in tower.transformer.resblocks)

    def encode_next_ids(self, token_ids: Tensor, past: Optional[List[Tuple[Tensor, Tensor]]]
                        = None) -> Tuple[Tensor, List[Tuple[Tensor, Tensor]]]:
        """Incremental :meth:`encode_ids` (a key/value cache, for generation): the features of
        ``(N, s)`` ids that follow the ``t`` positions held in ``past``.

        Args:
            token_ids: ``(N, s)`` the next ids (the whole prefix when ``past`` is None).
            past: per block, keys and values ``(N, heads, t, W / heads)`` of the earlier
                positions, as returned by the previous call.

        Returns:
            ``(N, s, W)`` token features, equal to the last ``s`` positions of
            :meth:`encode_ids` on the whole prefix (to float rounding), and the ``past`` that
            covers ``t + s`` positions.
        """
        if not self.supports_incremental:
            raise NotImplementedError(f'{type(self.tower.transformer.resblocks[0]).__name__} '
                                      'blocks have no incremental path; use encode_ids')
        tower, (batch, length) = self.tower, token_ids.shape
        start = 0 if past is None else past[0][0].shape[2]
        if start + length > self.context_length:
            raise ValueError(f'{start + length} tokens exceed the context length '
                             f'{self.context_length}')
        x = tower.token_embedding(token_ids) + tower.positional_embedding[start:start + length]
        # The new positions see every earlier one and, among themselves, their predecessors.
        allowed = None if length == 1 else torch.ones(
            length, start + length, dtype=torch.bool, device=x.device).tril(diagonal=start)
        new_past = []
        for index, block in enumerate(tower.transformer.resblocks):
            attn = block.attn
            heads = attn.num_heads
            qkv = onednn_linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = (part.view(batch, length, heads, -1).transpose(1, 2)
                       for part in qkv.chunk(3, dim=-1))
            if past is not None:
                k = torch.cat([past[index][0], k], dim=2)
                v = torch.cat([past[index][1], v], dim=2)
            new_past.append((k, v))
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=attn.dropout if self.training else 0.0)
            out = onednn_linear(out.transpose(1, 2).reshape(batch, length, -1),
                                attn.out_proj.weight, attn.out_proj.bias)
            x = x + block.ls_1(out)
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return tower.ln_final(x), new_past

    def decode(self, token_ids: Sequence[int]) -> str:
        """Ids (without start/end/padding) -> text."""
        text = self.tokenizer.decode([int(t) for t in token_ids]).strip()
        # The BPE decoder puts a space before punctuation ("circle , and").
        return re.sub(r'\s+([,.!?;:])', r'\1', text)

    def forward(self, texts: Sequence[str]) -> TextEncoderOutput:
        """Encode ``N`` strings (see :class:`TextEncoderOutput`)."""
        tokens = self.tokenize(texts)
        lengths = self.lengths(tokens)
        tokens = tokens[:, :int(lengths.max())]
        pooled, token_feats = self._run_tower(tokens)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths[:, None]
        return TextEncoderOutput(token_feats=token_feats, pooled=pooled, token_ids=tokens,
                                 mask=mask)

    def encode_vocabulary(self, class_names: Sequence[str]) -> Tensor:
        """``(K, D)`` L2-normalised class embeddings, averaged over the prompt templates
        (with gradients through the tower and ``train_templates='sample'``: from one template
        per name, drawn with torch's generator).

        Cached while the encoder is frozen, so a fixed vocabulary of thousands of names costs one
        encoding per process, not one per image.
        """
        if len(class_names) == 0:
            raise ValueError('the vocabulary is empty: give at least one class name')
        key = (tuple(class_names), self.templates)
        cacheable = self.frozen or not torch.is_grad_enabled()
        if cacheable and key in self._vocab_cache:
            cached = self._vocab_cache[key]
            if cached.device == self.token_embedding_table.device:
                return cached
        templates = [self.templates] * len(class_names)
        if not cacheable and self.train_templates == 'sample':
            drawn = torch.randint(len(self.templates), (len(class_names),)).tolist()
            templates = [(self.templates[i],) for i in drawn]
        prompts = [t.format(name) for name, own in zip(class_names, templates) for t in own]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            embeds = []
            for start in range(0, len(prompts), 1024):
                embeds.append(self(prompts[start:start + 1024]).pooled)
        embeds = F.normalize(torch.cat(embeds), dim=-1)
        embeds = F.normalize(embeds.view(len(class_names), len(templates[0]), -1).mean(1),
                             dim=-1)
        if cacheable:
            self._vocab_cache[key] = embeds.detach()
        return embeds

    def train(self, mode: bool = True):
        if mode and not self.frozen:
            self._vocab_cache.clear()
        return super().train(mode)

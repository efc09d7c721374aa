"""Official X-Decoder checkpoint -> openseg key names, for the backbone and the pixel decoder.

The official checkpoints (microsoft/X-Decoder, e.g. ``xdecoder_focalt_last.pt``) are raw state
dicts with the prefixes ``backbone.`` (``D2FocalNet``, ``focal_dw`` variant),
``sem_seg_head.pixel_decoder.`` (``TransformerEncoderPixelDecoder``) and
``sem_seg_head.predictor.`` (``XDecoder``, incl. the language encoder), plus the top-level
``backbone_proj``. The functions here take the part *without* its prefix (see
:func:`strip_prefix`) and return tensors named after
:class:`openseg_xdecoder.models.focalnet.FocalNet` and
:class:`openseg_xdecoder.models.transformer_encoder_fpn.TransformerEncoderFPN`.

Backbone key map (``i`` stage, ``j`` block, ``k`` focal level; ``*`` = ``weight`` / ``bias``)::

    official (backbone.)                        openseg FocalNet                    tensor
    patch_embed.proj.*                          stem.proj.*                         as is
    patch_embed.norm.*                          stem.norm.*                         as is
    layers.i.downsample.proj.*                  stages.(i+1).downsample.proj.*      as is
    layers.i.downsample.norm.*                  stages.(i+1).downsample.norm.*      as is
    layers.i.blocks.j.dw1.* / dw2.*             stages.i.blocks.j.dw1.* / dw2.*     as is
    layers.i.blocks.j.norm1.* / norm2.*         stages.i.blocks.j.norm1_post.* /    as is
                                                norm2_post.*  (post-norm models;
                                                norm1.* / norm2.* for pre-norm)
    layers.i.blocks.j.modulation.f.weight       ...modulation.f.weight              (O,C)->(O,C,1,1)
    layers.i.blocks.j.modulation.f.bias         ...modulation.f.bias                as is
    layers.i.blocks.j.modulation.h.*            ...modulation.h.*                   as is (1x1 conv)
    layers.i.blocks.j.modulation.focal_layers.k.0.weight   same name                as is
    layers.i.blocks.j.modulation.proj.weight    ...modulation.proj.weight           (O,C)->(O,C,1,1)
    layers.i.blocks.j.modulation.proj.bias      ...modulation.proj.bias             as is
    layers.i.blocks.j.modulation.ln.*           ...modulation.norm.*                as is
    layers.i.blocks.j.gamma_1 / gamma_2         stages.i.blocks.j.ls1.gamma / ls2.gamma
    layers.i.blocks.j.mlp.fc1.weight / fc2.weight   same name                       (O,C)->(O,C,1,1)
    layers.i.blocks.j.mlp.fc1.bias / fc2.bias   same name                           as is
    norm{i}.*                                   norm{i}.*                           as is

The official down-sampling closes stage ``i`` (``layers.i.downsample``), timm's opens stage
``i + 1`` (``stages.(i+1).downsample``): the same convolution, moved. ``head.*`` and ``norm.*``
of ImageNet classification FocalNet checkpoints have no counterpart (dropped when not strict).

Pixel-decoder key map (``k`` = 1..3 the res2..res4 levels, ``n`` encoder layer)::

    official (sem_seg_head.pixel_decoder.)       openseg TransformerEncoderFPN (mmdet names)
    adapter_k.weight                             lateral_convs.(k-1).conv.weight
    adapter_k.norm.*                             lateral_convs.(k-1).gn.*
    layer_k.weight                               output_convs.(k-1).conv.weight
    layer_k.norm.*                               output_convs.(k-1).gn.*
    layer_4.weight  (the last level)             encoder_out_proj.conv.weight
    layer_4.norm.*                               encoder_out_proj.gn.*
    input_proj.*                                 encoder_in_proj.*
    mask_features.*                              mask_feature.*
    transformer.encoder.layers.n.self_attn.{in_proj_weight,in_proj_bias,out_proj.weight,
        out_proj.bias}                           encoder.layers.n.self_attn.attn.<same>
    transformer.encoder.layers.n.linear1.*       encoder.layers.n.ffn.layers.0.0.*
    transformer.encoder.layers.n.linear2.*       encoder.layers.n.ffn.layers.1.*
    transformer.encoder.layers.n.norm1.* / norm2.*   encoder.layers.n.norms.0.* / norms.1.*

All tensors keep their shapes there (GN convs have no bias; ``input_proj`` and
``mask_features`` have one). The rules are the ``BACKBONE_RULES`` / ``PIXEL_DECODER_RULES``
tables below: ``(regex on the official key, target template, tensor transform)``.
"""
import re
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['BACKBONE_RULES', 'PIXEL_DECODER_RULES', 'PREDICTOR_RULES', 'convert_backbone',
           'convert_pixel_decoder', 'convert_predictor', 'convert_official', 'is_official',
           'strip_prefix', 'load_backbone_state']


def _as_is(v: Tensor) -> Tensor:
    return v


def _linear_to_conv1x1(v: Tensor) -> Tensor:
    return v.reshape(*v.shape, 1, 1) if v.dim() == 2 else v


_BLOCK = r'^layers\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.'
_TO_BLOCK = 'stages.{stage}.blocks.{block}.'

#: (official regex, target template, transform). Templates are ``str.format``-ed with the
#: regex's named groups, plus ``next_stage`` (= ``stage + 1``) and ``norm_suffix``
#: (``_post`` for post-norm models, else empty).
BACKBONE_RULES: List[Tuple[str, str, Callable[[Tensor], Tensor]]] = [
    (r'^patch_embed\.(?P<rest>(proj|norm)\.(weight|bias))$', 'stem.{rest}', _as_is),
    (r'^layers\.(?P<stage>\d+)\.downsample\.(?P<rest>(proj|norm)\.(weight|bias))$',
     'stages.{next_stage}.downsample.{rest}', _as_is),
    (_BLOCK + r'(?P<rest>dw[12]\.(weight|bias))$', _TO_BLOCK + '{rest}', _as_is),
    (_BLOCK + r'norm(?P<n>[12])\.(?P<param>weight|bias)$',
     _TO_BLOCK + 'norm{n}{norm_suffix}.{param}', _as_is),
    (_BLOCK + r'modulation\.(?P<rest>(f|proj)\.weight)$', _TO_BLOCK + 'modulation.{rest}',
     _linear_to_conv1x1),
    (_BLOCK + r'modulation\.(?P<rest>(f|proj)\.bias)$', _TO_BLOCK + 'modulation.{rest}', _as_is),
    (_BLOCK + r'modulation\.(?P<rest>h\.(weight|bias))$', _TO_BLOCK + 'modulation.{rest}',
     _as_is),
    (_BLOCK + r'modulation\.(?P<rest>focal_layers\.\d+\.0\.weight)$',
     _TO_BLOCK + 'modulation.{rest}', _as_is),
    (_BLOCK + r'modulation\.ln\.(?P<param>weight|bias)$', _TO_BLOCK + 'modulation.norm.{param}',
     _as_is),
    (_BLOCK + r'gamma_(?P<n>[12])$', _TO_BLOCK + 'ls{n}.gamma', _as_is),
    (_BLOCK + r'mlp\.(?P<rest>fc[12]\.weight)$', _TO_BLOCK + 'mlp.{rest}', _linear_to_conv1x1),
    (_BLOCK + r'mlp\.(?P<rest>fc[12]\.bias)$', _TO_BLOCK + 'mlp.{rest}', _as_is),
    (r'^(?P<rest>norm\d+\.(weight|bias))$', '{rest}', _as_is),
]

#: Official keys of ImageNet classification FocalNets that a segmentation backbone drops.
BACKBONE_IGNORED = (r'^head\.', r'^norm\.(weight|bias)$')

_ENC = r'^transformer\.encoder\.layers\.(?P<layer>\d+)\.'
_TO_ENC = 'encoder.layers.{layer}.'

#: (official regex, target template, transform); ``{level}`` = ``k - 1`` and ``{conv}`` is
#: ``lateral_convs.{level}`` / ``output_convs.{level}`` or ``encoder_out_proj`` for the last
#: ``layer_k``; ``{norm_name}`` is the ConvModule's norm attribute (``gn``).
PIXEL_DECODER_RULES: List[Tuple[str, str, Callable[[Tensor], Tensor]]] = [
    (r'^adapter_(?P<k>\d+)\.(?P<param>weight|bias)$', 'lateral_convs.{level}.conv.{param}',
     _as_is),
    (r'^adapter_(?P<k>\d+)\.norm\.(?P<param>weight|bias)$',
     'lateral_convs.{level}.{norm_name}.{param}', _as_is),
    (r'^layer_(?P<k>\d+)\.(?P<param>weight|bias)$', '{conv}.conv.{param}', _as_is),
    (r'^layer_(?P<k>\d+)\.norm\.(?P<param>weight|bias)$', '{conv}.{norm_name}.{param}', _as_is),
    (r'^input_proj\.(?P<param>weight|bias)$', 'encoder_in_proj.{param}', _as_is),
    (r'^mask_features\.(?P<param>weight|bias)$', 'mask_feature.{param}', _as_is),
    (_ENC + r'self_attn\.(?P<rest>in_proj_weight|in_proj_bias|out_proj\.(weight|bias))$',
     _TO_ENC + 'self_attn.attn.{rest}', _as_is),
    (_ENC + r'linear1\.(?P<param>weight|bias)$', _TO_ENC + 'ffn.layers.0.0.{param}', _as_is),
    (_ENC + r'linear2\.(?P<param>weight|bias)$', _TO_ENC + 'ffn.layers.1.{param}', _as_is),
    (_ENC + r'norm(?P<n>[12])\.(?P<param>weight|bias)$', _TO_ENC + 'norms.{norm_index}.{param}',
     _as_is),
]


_TO_DEC = 'query_decoder.decoder.layers.{layer}.'
_LANG = r'^lang_encoder\.lang_encoder\.'

#: Predictor (``sem_seg_head.predictor.``) -> openseg :class:`XDecoder` attributes. The
#: decoder layers are mmdet's ``Mask2FormerTransformerDecoderLayer`` (cross-attention,
#: self-attention, FFN: the official order), the text encoder is open_clip's text tower.
PREDICTOR_RULES: List[Tuple[str, str, Callable[[Tensor], Tensor]]] = [
    (r'^transformer_self_attention_layers\.(?P<layer>\d+)\.self_attn\.(?P<rest>.+)$',
     _TO_DEC + 'self_attn.attn.{rest}', _as_is),
    (r'^transformer_self_attention_layers\.(?P<layer>\d+)\.norm\.(?P<param>weight|bias)$',
     _TO_DEC + 'norms.1.{param}', _as_is),
    (r'^transformer_cross_attention_layers\.(?P<layer>\d+)\.multihead_attn\.(?P<rest>.+)$',
     _TO_DEC + 'cross_attn.attn.{rest}', _as_is),
    (r'^transformer_cross_attention_layers\.(?P<layer>\d+)\.norm\.(?P<param>weight|bias)$',
     _TO_DEC + 'norms.0.{param}', _as_is),
    (r'^transformer_ffn_layers\.(?P<layer>\d+)\.linear1\.(?P<param>weight|bias)$',
     _TO_DEC + 'ffn.layers.0.0.{param}', _as_is),
    (r'^transformer_ffn_layers\.(?P<layer>\d+)\.linear2\.(?P<param>weight|bias)$',
     _TO_DEC + 'ffn.layers.1.{param}', _as_is),
    (r'^transformer_ffn_layers\.(?P<layer>\d+)\.norm\.(?P<param>weight|bias)$',
     _TO_DEC + 'norms.2.{param}', _as_is),
    (r'^decoder_norm\.(?P<param>weight|bias)$', 'query_decoder.decoder.post_norm.{param}',
     _as_is),
    (r'^level_embed\.weight$', 'query_decoder.level_embed.weight', _as_is),
    (r'^input_proj\.(?P<level>\d+)\.(?P<param>weight|bias)$',
     'query_decoder.input_projs.{level}.{param}', _as_is),
    (r'^mask_embed\.layers\.(?P<n>[012])\.(?P<param>weight|bias)$',
     'query_decoder.mask_embed.{seq_index}.{param}', _as_is),
    (r'^pos_embed_caping\.weight$', 'query_decoder.caption_pos.weight', _as_is),
    (r'^class_embed$', 'head.class_embed', _as_is),
    (r'^caping_embed$', 'head.caption_embed', _as_is),
    (r'^lang_encoder\.logit_scale$', 'head.logit_scale', _as_is),
    (r'^lang_encoder\.lang_proj$', 'text_encoder.tower.text_projection', _as_is),
    (_LANG + r'(?P<rest>token_embedding\.weight|positional_embedding|ln_final\.(weight|bias))$',
     'text_encoder.tower.{rest}', _as_is),
    (_LANG + r'resblocks\.(?P<rest>.+)$', 'text_encoder.tower.transformer.resblocks.{rest}',
     _as_is),
]

#: Official entries with no openseg counterpart: the self-attention mask buffer (built from
#: the task, :mod:`..models.attention_masks`) and the loss's class-weight constant.
PREDICTOR_IGNORED = (r'^self_attn_mask$',)
TOP_LEVEL_IGNORED = ('criterion.empty_weight',)


def _apply_rules(state: Dict[str, Tensor], rules, fields: Callable[[dict], dict],
                 ignored=(), strict: bool = True) -> Dict[str, Tensor]:
    out, unknown = {}, []
    compiled = [(re.compile(p), t, f) for p, t, f in rules]
    for key, value in state.items():
        for pattern, template, transform in compiled:
            match = pattern.match(key)
            if match:
                new_key = template.format(**fields(match.groupdict()))
                if new_key in out:
                    raise ValueError(f'two official keys map to {new_key!r}')
                out[new_key] = transform(value)
                break
        else:
            if not any(re.match(p, key) for p in ignored):
                unknown.append(key)
    if unknown and strict:
        raise KeyError(f'official keys without a conversion rule: {unknown[:10]}'
                       f'{" ..." if len(unknown) > 10 else ""}')
    return out


def strip_prefix(state: Dict[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    """The entries of ``state`` under ``prefix`` (e.g. ``'backbone.'``), without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def convert_backbone(state: Dict[str, Tensor], use_post_norm: bool = True,
                     strict: bool = True) -> Dict[str, Tensor]:
    """Official ``D2FocalNet`` keys (without ``backbone.``) -> :class:`FocalNet` keys.

    Args:
        state: official backbone tensors.
        use_post_norm: the model's ``USE_POSTLN`` (True for X-Decoder Focal-T): the block norms
            then go to timm's ``norm1_post`` / ``norm2_post``.
        strict: raise on keys no rule covers (``head.*`` / ``norm.*`` of classification
            checkpoints are always dropped).
    """
    suffix = '_post' if use_post_norm else ''

    def fields(groups):
        if groups.get('stage') is not None:
            groups['next_stage'] = int(groups['stage']) + 1
        return dict(groups, norm_suffix=suffix)
    return _apply_rules(state, BACKBONE_RULES, fields, BACKBONE_IGNORED, strict)


def convert_pixel_decoder(state: Dict[str, Tensor], norm_name: str = 'gn',
                          strict: bool = True) -> Dict[str, Tensor]:
    """Official ``TransformerEncoderPixelDecoder`` keys (without
    ``sem_seg_head.pixel_decoder.``) -> :class:`TransformerEncoderFPN` keys.

    The number of input levels is the largest ``layer_k`` index (4 for res2..res5); that last
    ``layer_k`` (after the transformer encoder) becomes ``encoder_out_proj``.
    """
    if any(k.startswith('transformer.encoder.norm.') for k in state):
        raise ValueError('pre-norm encoder (final encoder LayerNorm) is not supported by '
                         "mmdet's DetrTransformerEncoder")
    levels = [int(m.group(1)) for m in map(re.compile(r'^layer_(\d+)\.').match, state) if m]
    num_levels = max(levels) if levels else 0

    def fields(groups):
        if groups.get('k') is not None:
            k = int(groups['k'])
            groups['level'] = k - 1
            groups['conv'] = 'encoder_out_proj' if k == num_levels else f'output_convs.{k - 1}'
        if groups.get('n') is not None:
            groups['norm_index'] = int(groups['n']) - 1
        return dict(groups, norm_name=norm_name)
    return _apply_rules(state, PIXEL_DECODER_RULES, fields, (), strict)


def _unwrap(checkpoint) -> Dict[str, Tensor]:
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    return checkpoint


def load_backbone_state(path: str, use_post_norm: bool = True,
                        prefix: Optional[str] = 'backbone.') -> Dict[str, Tensor]:
    """Backbone tensors of a local checkpoint in :class:`FocalNet`'s names.

    Accepts a full official X-Decoder checkpoint (``backbone.`` prefix), an official
    FocalNet/D2FocalNet backbone state (``patch_embed.*``, ``layers.*``) or one already in
    openseg names (``stem.*``, ``stages.*``; an openseg model's ``backbone.`` prefix is
    stripped too).
    """
    state = _unwrap(torch.load(path, map_location='cpu', weights_only=True))
    if prefix and any(k.startswith(prefix) for k in state):
        state = strip_prefix(state, prefix)
    if any(k.startswith(('patch_embed.', 'layers.')) for k in state):
        state = convert_backbone(state, use_post_norm=use_post_norm, strict=False)
    return state


def convert_predictor(state: Dict[str, Tensor], strict: bool = True) -> Dict[str, Tensor]:
    """Official ``XDecoder`` predictor keys (without ``sem_seg_head.predictor.``) -> openseg
    :class:`XDecoder` keys (``query_decoder.*``, ``head.*``, ``text_encoder.*``).

    ``query_feat`` / ``query_embed`` hold ``m`` rows, the last being the global (class) query;
    openseg keeps that one apart (``global_query_feat`` / ``global_query_pos``), so they are
    split. The ``mask_embed`` MLP's three linears sit at indices 0, 2, 4 of openseg's
    ``nn.Sequential`` (ReLUs between).
    """
    state = dict(state)
    out = {}
    for official, ours in (('query_feat.weight', 'query_feat'),
                           ('query_embed.weight', 'query_pos')):
        if official in state:
            rows = state.pop(official)
            out[f'query_decoder.{ours}.weight'] = rows[:-1]
            out[f'query_decoder.global_{ours}.weight'] = rows[-1:]

    def fields(groups):
        if groups.get('n') is not None:
            groups['seq_index'] = 2 * int(groups['n'])
        return groups
    out.update(_apply_rules(state, PREDICTOR_RULES, fields, PREDICTOR_IGNORED, strict))
    return out


def is_official(state: Dict[str, Tensor]) -> bool:
    """Whether ``state`` is keyed like an official X-Decoder checkpoint."""
    return any(k.startswith('sem_seg_head.') for k in state)


def convert_official(state: Dict[str, Tensor], strict: bool = True) -> Dict[str, Tensor]:
    """A whole official X-Decoder checkpoint -> the state dict of openseg's :class:`XDecoder`
    built from ``xdecoder::xdecoder_focalt_paper.py``.

    ``backbone_proj`` (the retrieval ensemble) goes to ``head.backbone_proj``.
    """
    state = _unwrap(state)
    known = ('backbone.', 'sem_seg_head.pixel_decoder.', 'sem_seg_head.predictor.')
    unknown = [k for k in state if not k.startswith(known) and k != 'backbone_proj'
               and k not in TOP_LEVEL_IGNORED]
    if unknown and strict:
        raise KeyError(f'not an official X-Decoder checkpoint: unexpected keys {unknown[:5]}')
    out = {f'backbone.{k}': v for k, v in
           convert_backbone(strip_prefix(state, 'backbone.'), strict=strict).items()}
    out.update({f'pixel_decoder.{k}': v for k, v in convert_pixel_decoder(
        strip_prefix(state, 'sem_seg_head.pixel_decoder.'), strict=strict).items()})
    out.update(convert_predictor(strip_prefix(state, 'sem_seg_head.predictor.'), strict))
    if 'backbone_proj' in state:
        out['head.backbone_proj'] = state['backbone_proj']
    return out

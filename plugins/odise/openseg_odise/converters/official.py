"""Official ODISE checkpoint -> openseg key names.

The official checkpoints (NVlabs/ODISE ``odise_label_coco_50e.pth``,
``odise_caption_coco_50e.pth``) are detectron2 files ``{"model": state_dict, ...}`` holding
the trainable weights only (Stable Diffusion and CLIP are re-read from their own files, as
openseg's frozen parts are). Key map (``i`` projection 0-7, ``n`` layer; ``*`` = weight /
bias)::

    official                                                  openseg
    backbone.feature_extractor.clip_project.{linear.*,        backbone.captioner.clip_project.<same>
        positional_embedding}
    backbone.feature_extractor.alpha_cond                     backbone.captioner.alpha_cond
    backbone.feature_extractor.time_embed_project.<rest>      backbone.captioner.time_embed_project.<rest>
    backbone.feature_extractor.alpha_cond_time_embed          backbone.captioner.alpha_cond_time_embed
    backbone.feature_projections.i.0.conv{1,2,3}.weight       backbone.feature_projections.i.conv{1,2,3}.weight
    backbone.feature_projections.i.0.conv{k}.norm.*           backbone.feature_projections.i.gn{k}.*
    backbone.feature_projections.i.0.shortcut.weight          backbone.feature_projections.i.downsample.0.weight
    backbone.feature_projections.i.0.shortcut.norm.*          backbone.feature_projections.i.downsample.1.*
    sem_seg_head.pixel_decoder.input_proj.l.0.*               pixel_decoder.input_convs.l.conv.*
    sem_seg_head.pixel_decoder.input_proj.l.1.*               pixel_decoder.input_convs.l.gn.*
    sem_seg_head.pixel_decoder.transformer.level_embed        pixel_decoder.level_encoding.weight
    ...transformer.encoder.layers.n.self_attn.<rest>          pixel_decoder.encoder.layers.n.self_attn.<rest>
    ...transformer.encoder.layers.n.linear1.* / linear2.*     pixel_decoder.encoder.layers.n.ffn.layers.0.0.* / ffn.layers.1.*
    ...transformer.encoder.layers.n.norm1.* / norm2.*         pixel_decoder.encoder.layers.n.norms.0.* / norms.1.*
    sem_seg_head.pixel_decoder.adapter_1.weight / .norm.*     pixel_decoder.lateral_convs.0.conv.weight / .gn.*
    sem_seg_head.pixel_decoder.layer_1.weight / .norm.*       pixel_decoder.output_convs.0.conv.weight / .gn.*
    sem_seg_head.pixel_decoder.mask_features.*                pixel_decoder.mask_feature.*
    sem_seg_head.predictor.transformer_self_attention_layers.n.self_attn.<rest>
                                                              query_decoder.decoder.layers.n.self_attn.attn.<rest>
    ...transformer_self_attention_layers.n.norm.*             query_decoder.decoder.layers.n.norms.1.*
    ...transformer_cross_attention_layers.n.multihead_attn.<rest>
                                                              query_decoder.decoder.layers.n.cross_attn.attn.<rest>
    ...transformer_cross_attention_layers.n.norm.*            query_decoder.decoder.layers.n.norms.0.*
    ...transformer_ffn_layers.n.linear1.* / linear2.*         query_decoder.decoder.layers.n.ffn.layers.0.0.* / ffn.layers.1.*
    ...transformer_ffn_layers.n.norm.*                        query_decoder.decoder.layers.n.norms.2.*
    sem_seg_head.predictor.decoder_norm.*                     query_decoder.decoder.post_norm.*
    sem_seg_head.predictor.query_feat.weight                  query_decoder.query_feat.weight
    sem_seg_head.predictor.query_embed.weight                 query_decoder.query_pos.weight
    sem_seg_head.predictor.level_embed.weight                 query_decoder.level_embed.weight
    sem_seg_head.predictor.mask_embed.layers.{0,1,2}.*        query_decoder.mask_embed.{0,2,4}.*
    sem_seg_head.predictor.post_mask_embed.pool_proj.<rest>   mask_embed.pool_proj.<rest>
    sem_seg_head.predictor.post_mask_embed.mask_embed.<rest>  mask_embed.mask_embed.<rest>
    sem_seg_head.predictor.post_mask_embed.logit_scale        head.logit_scale (label model) /
                                                              word_head.logit_scale (caption model)
    sem_seg_head.predictor.class_embed.*  (caption model)     head.class_embed.*
    category_head.text_proj.* / category_head.null_embed      head.text_proj.* / head.null_embed
    word_head.text_proj.*  (caption model)                    word_head.text_proj.*
    criterion.empty_weight                                    (dropped: the criterion's no_object_weight)

Every tensor keeps its shape. The official pixel decoder's ``input_proj`` lists levels from
the coarsest, as mmdet's ``input_convs`` do; its single FPN level (stride 4) is ``adapter_1``
/ ``layer_1``. A key without a rule is an error naming it.
"""
import re
from typing import Dict

from torch import Tensor

__all__ = ['RULES', 'IGNORED', 'convert_official', 'is_official']

_PD = r'^sem_seg_head\.pixel_decoder\.'
_ENC = _PD + r'transformer\.encoder\.layers\.(?P<n>\d+)\.'
_PRED = r'^sem_seg_head\.predictor\.'
_DEC = 'query_decoder.decoder.layers.{n}.'
_FE = r'^backbone\.feature_extractor\.'
_PROJ = r'^backbone\.feature_projections\.(?P<i>\d+)\.0\.'

#: ``(official regex, openseg template)``; ``{logit_scale_owner}`` is ``head`` for the label
#: model and ``word_head`` for the caption model (the one with ``word_head.*`` keys);
#: ``{mlp}`` maps MLP layer ``k`` to ``2k`` (ReLUs between Linear layers in a Sequential).
RULES = [
    (_FE + r'(?P<rest>(clip_project|time_embed_project)\..+|alpha_cond|alpha_cond_time_embed)$',
     'backbone.captioner.{rest}'),
    (_PROJ + r'conv(?P<k>[123])\.weight$', 'backbone.feature_projections.{i}.conv{k}.weight'),
    (_PROJ + r'conv(?P<k>[123])\.norm\.(?P<p>weight|bias)$',
     'backbone.feature_projections.{i}.gn{k}.{p}'),
    (_PROJ + r'shortcut\.weight$', 'backbone.feature_projections.{i}.downsample.0.weight'),
    (_PROJ + r'shortcut\.norm\.(?P<p>weight|bias)$',
     'backbone.feature_projections.{i}.downsample.1.{p}'),
    (_PD + r'input_proj\.(?P<l>\d+)\.0\.(?P<p>weight|bias)$',
     'pixel_decoder.input_convs.{l}.conv.{p}'),
    (_PD + r'input_proj\.(?P<l>\d+)\.1\.(?P<p>weight|bias)$',
     'pixel_decoder.input_convs.{l}.gn.{p}'),
    (_PD + r'transformer\.level_embed$', 'pixel_decoder.level_encoding.weight'),
    (_ENC + r'self_attn\.(?P<rest>.+)$', 'pixel_decoder.encoder.layers.{n}.self_attn.{rest}'),
    (_ENC + r'linear1\.(?P<p>weight|bias)$', 'pixel_decoder.encoder.layers.{n}.ffn.layers.0.0.{p}'),
    (_ENC + r'linear2\.(?P<p>weight|bias)$', 'pixel_decoder.encoder.layers.{n}.ffn.layers.1.{p}'),
    (_ENC + r'norm(?P<k>[12])\.(?P<p>weight|bias)$',
     'pixel_decoder.encoder.layers.{n}.norms.{k0}.{p}'),
    (_PD + r'adapter_1\.weight$', 'pixel_decoder.lateral_convs.0.conv.weight'),
    (_PD + r'adapter_1\.norm\.(?P<p>weight|bias)$', 'pixel_decoder.lateral_convs.0.gn.{p}'),
    (_PD + r'layer_1\.weight$', 'pixel_decoder.output_convs.0.conv.weight'),
    (_PD + r'layer_1\.norm\.(?P<p>weight|bias)$', 'pixel_decoder.output_convs.0.gn.{p}'),
    (_PD + r'mask_features\.(?P<p>weight|bias)$', 'pixel_decoder.mask_feature.{p}'),
    (_PRED + r'transformer_self_attention_layers\.(?P<n>\d+)\.self_attn\.(?P<rest>.+)$',
     _DEC + 'self_attn.attn.{rest}'),
    (_PRED + r'transformer_self_attention_layers\.(?P<n>\d+)\.norm\.(?P<p>weight|bias)$',
     _DEC + 'norms.1.{p}'),
    (_PRED + r'transformer_cross_attention_layers\.(?P<n>\d+)\.multihead_attn\.(?P<rest>.+)$',
     _DEC + 'cross_attn.attn.{rest}'),
    (_PRED + r'transformer_cross_attention_layers\.(?P<n>\d+)\.norm\.(?P<p>weight|bias)$',
     _DEC + 'norms.0.{p}'),
    (_PRED + r'transformer_ffn_layers\.(?P<n>\d+)\.linear1\.(?P<p>weight|bias)$',
     _DEC + 'ffn.layers.0.0.{p}'),
    (_PRED + r'transformer_ffn_layers\.(?P<n>\d+)\.linear2\.(?P<p>weight|bias)$',
     _DEC + 'ffn.layers.1.{p}'),
    (_PRED + r'transformer_ffn_layers\.(?P<n>\d+)\.norm\.(?P<p>weight|bias)$',
     _DEC + 'norms.2.{p}'),
    (_PRED + r'decoder_norm\.(?P<p>weight|bias)$', 'query_decoder.decoder.post_norm.{p}'),
    (_PRED + r'query_feat\.weight$', 'query_decoder.query_feat.weight'),
    (_PRED + r'query_embed\.weight$', 'query_decoder.query_pos.weight'),
    (_PRED + r'level_embed\.weight$', 'query_decoder.level_embed.weight'),
    (_PRED + r'mask_embed\.layers\.(?P<k>[012])\.(?P<p>weight|bias)$',
     'query_decoder.mask_embed.{mlp}.{p}'),
    (_PRED + r'post_mask_embed\.(?P<rest>(pool_proj|mask_embed)\..+)$', 'mask_embed.{rest}'),
    (_PRED + r'post_mask_embed\.logit_scale$', '{logit_scale_owner}.logit_scale'),
    (_PRED + r'class_embed\.(?P<p>weight|bias)$', 'head.class_embed.{p}'),
    (r'^category_head\.(?P<rest>text_proj\.(weight|bias)|null_embed)$', 'head.{rest}'),
    (r'^word_head\.(?P<rest>text_proj\.(weight|bias))$', 'word_head.{rest}'),
]

#: Official entries with no openseg counterpart.
IGNORED = (r'^criterion\.empty_weight$',)


def is_official(state: Dict[str, Tensor]) -> bool:
    """Whether ``state`` holds official ODISE names."""
    return any(k.startswith(('sem_seg_head.', 'backbone.feature_extractor.')) for k in state)


def convert_official(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """An official ODISE state dict (or detectron2 ``{"model": ...}`` file content) ->
    openseg names, for ``odise_{label,caption}_coco_paper.py``.

    Raises:
        KeyError: official keys without a rule (named).
    """
    if 'model' in state and isinstance(state['model'], dict):
        state = state['model']
    caption = any(k.startswith('word_head.') for k in state)
    owner = 'word_head' if caption else 'head'
    compiled = [(re.compile(p), t) for p, t in RULES]
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, template in compiled:
            match = pattern.match(key)
            if match:
                fields = match.groupdict()
                if 'k' in fields:
                    fields['k0'] = int(fields['k']) - 1
                    fields['mlp'] = 2 * int(fields['k'])
                new_key = template.format(logit_scale_owner=owner, **fields)
                if new_key in out:
                    raise ValueError(f'two official keys map to {new_key!r}')
                out[new_key] = value
                break
        else:
            if not any(re.match(p, key) for p in IGNORED):
                unknown.append(key)
    if unknown:
        raise KeyError(f'official keys without a conversion rule: {unknown[:10]}'
                       f'{" ..." if len(unknown) > 10 else ""}')
    return out

"""Official APE checkpoints (shenyunhang/APE, ``model_final.pth``; the key map
and its test follow APE-D's layout) -> openseg.

Key map (``model_vision.`` prefix of the official names left out; ``N``, ``M`` indices):

=============================================================  =================================
official                                                       openseg (``ape.APE``)
=============================================================  =================================
``backbone.net.pos_embed`` (1, 1 + 21 x 21, C)                  ``backbone.net.pos_embed``
                                                               (1, 441, C): the class token's
                                                               position dropped, as the
                                                               official forward drops it
``backbone.net.patch_embed.proj.*``                             same
``backbone.net.blocks.N.attn.{q,k,v}_proj.weight``, ``proj``    same
``backbone.net.blocks.N.attn.q_bias`` / ``v_bias``              ``...attn.q_proj.bias`` /
                                                               ``v_proj.bias``
``backbone.net.blocks.N.attn.inner_attn_ln``                    ``...attn.norm`` (sub-LN)
``backbone.net.blocks.N.mlp.w1`` / ``w2`` / ``ffn_ln`` /        ``...mlp.fc1_g`` / ``fc1_x`` /
``w3``                                                         ``norm`` / ``fc2`` (timm SwiGLU)
``backbone.net.blocks.N.norm{1,2}``                             same
``backbone.net.rope_{win,glb}.*``, ``...attn.rope.*``           dropped (RoPE tables, rebuilt)
``backbone.simfp_{2..5}.*``                                     same
``neck.convs.N.conv`` / ``neck.convs.N.norm``                   ``neck.convs.N.conv`` / ``gn``
``transformer.level_embeds``                                    ``level_embed``
``transformer.encoder.layers.N.attentions.0``                   ``encoder.layers.N.self_attn``
``transformer.encoder.layers.N.ffns.0`` / ``norms.M``           ``...ffn`` / ``norms.M``
``transformer.encoder.vl_layers.N.b_attn.*``                    ``encoder.vl_layers.N.*``
``transformer.decoder.layers.N.attentions.0`` / ``1``           ``decoder.layers.N.self_attn``
                                                               / ``cross_attn``
``transformer.decoder.layers.N.ffns.0`` / ``norms.M``           ``...ffn`` / ``norms.M``
``transformer.enc_output(_norm)``                               ``memory_trans_fc`` / ``_norm``
``transformer.pos_trans(_norm)``, ``pix_trans(_norm)``          ``pos_trans_fc`` / ``_norm``,
                                                               ``pix_trans_fc`` / ``_norm``
``class_embed.N`` (N < 6: GLIP heads, 6: proposals)             ``cls_branches.N``
``bbox_embed.N.layers.M``                                       ``reg_branches.N.(2M)``
``transformer.decoder.class_embed.N`` / ``bbox_embed.N``        the same tensors saved twice:
                                                               checked equal, dropped
``transformer.decoder.class_embed_ambiguous.N`` /               ``cls_branches_ambiguous.N`` /
``bbox_embed_ambiguous.N.layers.M``                             ``reg_branches_ambiguous.N.
                                                               (2M)``
``lateral_conv.weight`` / ``.norm``, ``output_conv.*``          ``lateral_conv.conv`` / ``.gn``,
                                                               ``output_conv.*`` alike
``mask_conv``, ``mask_embed.layers.M``                          ``mask_conv``,
                                                               ``mask_embed.(2M)``
``name_prompt_fusion_feature`` (1, 1, D)                        checked all zero, dropped (the
                                                               model's fixed zero token)
``criterion.N.fed_loss_*``                                      dropped (loss constants)
``model_language.net.*`` (EVA02-CLIP-E text tower, fp16)        skipped: the text tower loads
                                                               from ``text_encoder.pretrained``
=============================================================  =================================

The backbone maps onto timm's EVA-02 (``ape_vitl_paper.py``) name for name; its windowed
blocks run global there (docs/plugins/ape.md, Fidelity). ``tests/test_ape_official_checkpoint.py``
checks the map on a state dict of every official name and shape
(``tests/data/official_ape_d_keys.json``).
"""
import re
from typing import Dict

import torch
from torch import Tensor

PREFIX = 'model_vision.'

#: Official keys that are not weights of the openseg model: (pattern, why).
DROPPED = (
    (r'^backbone\.net\.(rope_win|rope_glb)\.', 'RoPE tables, rebuilt by the backbone'),
    (r'^backbone\.net\.blocks\.\d+\.attn\.rope\.', 'RoPE tables, rebuilt by the backbone'),
    (r'^criterion\.', 'loss constants'),
    (r'^model_language\.', 'the frozen text tower: it loads from text_encoder.pretrained'),
)

#: Renames, applied in order to the key without ``model_vision.``.
RULES = (
    (r'^backbone\.net\.blocks\.(\d+)\.attn\.q_bias$', r'backbone.net.blocks.\1.attn.q_proj.bias'),
    (r'^backbone\.net\.blocks\.(\d+)\.attn\.v_bias$', r'backbone.net.blocks.\1.attn.v_proj.bias'),
    (r'^backbone\.net\.blocks\.(\d+)\.attn\.inner_attn_ln\.', r'backbone.net.blocks.\1.attn.norm.'),
    (r'^backbone\.net\.blocks\.(\d+)\.mlp\.w1\.', r'backbone.net.blocks.\1.mlp.fc1_g.'),
    (r'^backbone\.net\.blocks\.(\d+)\.mlp\.w2\.', r'backbone.net.blocks.\1.mlp.fc1_x.'),
    (r'^backbone\.net\.blocks\.(\d+)\.mlp\.ffn_ln\.', r'backbone.net.blocks.\1.mlp.norm.'),
    (r'^backbone\.net\.blocks\.(\d+)\.mlp\.w3\.', r'backbone.net.blocks.\1.mlp.fc2.'),
    (r'^neck\.convs\.(\d+)\.norm\.', r'neck.convs.\1.gn.'),
    (r'^transformer\.level_embeds$', 'level_embed'),
    (r'^transformer\.encoder\.layers\.(\d+)\.attentions\.0\.', r'encoder.layers.\1.self_attn.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.ffns\.0\.', r'encoder.layers.\1.ffn.'),
    (r'^transformer\.encoder\.layers\.(\d+)\.norms\.', r'encoder.layers.\1.norms.'),
    (r'^transformer\.encoder\.vl_layers\.(\d+)\.b_attn\.', r'encoder.vl_layers.\1.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.attentions\.0\.', r'decoder.layers.\1.self_attn.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.attentions\.1\.', r'decoder.layers.\1.cross_attn.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.ffns\.0\.', r'decoder.layers.\1.ffn.'),
    (r'^transformer\.decoder\.layers\.(\d+)\.norms\.', r'decoder.layers.\1.norms.'),
    (r'^transformer\.enc_output\.', 'memory_trans_fc.'),
    (r'^transformer\.enc_output_norm\.', 'memory_trans_norm.'),
    (r'^transformer\.pos_trans\.', 'pos_trans_fc.'),
    (r'^transformer\.pos_trans_norm\.', 'pos_trans_norm.'),
    (r'^transformer\.pix_trans\.', 'pix_trans_fc.'),
    (r'^transformer\.pix_trans_norm\.', 'pix_trans_norm.'),
    (r'^transformer\.decoder\.class_embed_ambiguous\.', 'cls_branches_ambiguous.'),
    (r'^transformer\.decoder\.bbox_embed_ambiguous\.(\d+)\.layers\.(\d+)\.',
     lambda m: f'reg_branches_ambiguous.{m[1]}.{2 * int(m[2])}.'),
    (r'^class_embed\.', 'cls_branches.'),
    (r'^bbox_embed\.(\d+)\.layers\.(\d+)\.', lambda m: f'reg_branches.{m[1]}.{2 * int(m[2])}.'),
    (r'^(lateral_conv|output_conv)\.weight$', r'\1.conv.weight'),
    (r'^(lateral_conv|output_conv)\.norm\.', r'\1.gn.'),
    (r'^mask_embed\.layers\.(\d+)\.', lambda m: f'mask_embed.{2 * int(m[1])}.'),
    (r'^(backbone\.(net\.(pos_embed|patch_embed\.|blocks\.)|simfp_\d)|neck\.convs\.\d+\.conv\.'
     r'|mask_conv\.)', r'\1'),
)

#: The heads the official code also saves under the decoder (``transformer.decoder.X`` is
#: the same module as ``X``).
DUPLICATES = r'^transformer\.decoder\.(class_embed|bbox_embed)\.'


def _rename(key: str) -> str:
    for pattern, replacement in RULES:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    raise KeyError(f'official APE key {PREFIX + key!r} has no rule in the converter '
                   '(openseg_ape/converters/official.py); is it an APE checkpoint?')


def convert_official(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """An official APE state dict (``model`` entry of the checkpoint, or the dict itself)
    -> the ``ape.APE`` state dict of ``ape_vitl_paper.py``, without the text tower.

    Raises:
        KeyError: a key no rule covers (named).
        ValueError: a duplicated head that differs from its twin, or a non-zero vocabulary
            fusion token (a ``learnable`` variant openseg does not build).
    """
    state = state.get('model', state)
    out = {}
    for full, value in state.items():
        if not full.startswith(PREFIX):
            raise KeyError(f'official APE key {full!r} lacks the {PREFIX!r} prefix; is it an '
                           'APE checkpoint?')
        key = full[len(PREFIX):]
        if any(re.match(pattern, key) for pattern, _ in DROPPED):
            continue
        if key == 'name_prompt_fusion_feature':
            if bool(value.float().abs().max() > 0):
                raise ValueError(f'{full} is not zero: this checkpoint fuses vocabulary prompts '
                                 "with a learned token ('learnable'), which openseg does not "
                                 'build')
            continue
        if re.match(DUPLICATES, key):
            twin = key[len('transformer.decoder.'):]
            if PREFIX + twin in state and not torch.equal(state[PREFIX + twin], value):
                raise ValueError(f'{full} differs from {PREFIX + twin}: the official code '
                                 'saves these heads twice, identical')
            continue
        if key == 'backbone.net.pos_embed':
            value = value[:, 1:]  # the class token's position, unused by the official ViT
        out[_rename(key)] = value
    return out

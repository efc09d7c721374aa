# APE sized to train on `shapes` on a 2-core CPU in minutes. The structure is APE's (frozen
# CLIP image tower as the backbone, ChannelMapper to 5 levels at strides 4..64, a deformable
# encoder with a fusion block before each layer, DETA proposals and assignment, a deformable
# decoder with box refinement, GLIP classifiers, the MaskDINO mask branch); the sizes are
# small: width 64, 2 encoder + 3 decoder layers, 4 heads, 100 queries, fusion width 128.
# The backbone and the text tower are the small CLIP trained on `shapes`
# (docs/pretrained_clip.md), as APE starts from EVA-CLIP.
_base_ = ['openseg_core::_base_/models/tiny_shapes_parts.py']

embed = 64
text_dims = 64  # ShapesCLIP-RN's embed_dim
levels = 5
model = dict(
    type='ape.APE',
    data_preprocessor={{_base_.clip_data_preprocessor}},
    backbone={{_base_.shapes_clip_backbone}},
    neck=dict(type='ChannelMapper', in_channels={{_base_.shapes_clip_channels}},
              out_channels=embed, kernel_size=1, norm_cfg=dict(type='GN', num_groups=32),
              act_cfg=None, bias=True, num_outs=levels),
    # APE embeds the bare prompt (no template): the end-of-text feature of "circle".
    text_encoder=dict(**_base_.shapes_clip_text_encoder, templates=('{}',)),
    encoder=dict(
        type='ape.VLDeformableEncoder', num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=4, num_levels=levels,
                               num_points=4, dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, ffn_drop=0.0)),
        fusion_cfg=dict(type='ape.BiAttentionBlock', v_dims=embed, l_dims=text_dims,
                        embed_dims=2 * embed, num_heads=4, dropout=0.1,
                        init_values=1.0 / 6, stable_softmax_2d=True)),
    decoder=dict(
        num_layers=3, return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=4, dropout=0.0, batch_first=True),
            cross_attn_cfg=dict(embed_dims=embed, num_heads=4, num_levels=levels,
                                num_points=4, dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=embed // 2, normalize=True, offset=-0.5),
    num_queries=100, num_feature_levels=levels, negative_bank_size=32,
    mask_in_index=0, mask_in_channels=64, mask_norm_groups=32,
    proposal_nms=True, proposal_pre_nms_topk=300, proposal_nms_thr=0.9,
    proposal_ambiguous=1,
    criterion=dict(
        type='ape.APECriterion',
        # Image-centric grounding with masks trains everything but the proposals' class
        # loss, as APE's RefCOCO group-by-image set.
        task_loss_weights=dict(grounding=dict(enc_cls=0.0))),
    test_cfg=dict(topk=100, nms_thr=0.7, instance_on=True, semantic_on=True,
                  panoptic_on=True))

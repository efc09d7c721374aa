# APE-D's model at paper scale (ape_deta_vitl_eva02_clip_vlf_lsj1024_cp_16x4_1080k): 900
# queries, 6 encoder + 6 decoder layers of width 256 (FFN 2048, 8 heads, 4 points), 5 levels
# at strides 4..64, a fusion block (width 2048) before every encoder layer, DETA proposals
# with NMS and the extra ("ambiguous") encoder head, the MaskDINO mask branch, 300
# detections per image. Random weights; official ones convert with
#   python tools/convert_checkpoint.py ape_official APE-D.pth ape_d_openseg.pth
# Stand-ins (docs/plugins/ape.md, Fidelity): the backbone is timm's EVA-02-L (patch 16, RoPE,
# SwiGLU, sub-LN; all blocks global, the official windows 16 of its 24) with ViTDet's simple
# feature pyramid; the text tower is open_clip's EVA02-E-14-plus layout (width 1280, 32
# layers, embed 1024), random unless `model.text_encoder.pretrained` names a local file.
_base_ = ['openseg_core::_base_/default_runtime.py']

embed = 256
levels = 5
text_dims = 1024
model = dict(
    type='ape.APE',
    data_preprocessor=dict(type='MultiTaskDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=64,
                           pad_mask=True, mask_pad_value=0, pad_seg=True, seg_pad_value=255),
    backbone=dict(
        type='ape.ViTSimpleFeaturePyramid',
        vit=dict(model_name='eva02_large_patch14_224', pretrained=False, img_size=336,
                 patch_size=16, ref_feat_shape=(16, 16), scale_attn_inner=True,
                 class_token=False, global_pool='', use_fc_norm=False,
                 use_post_transformer_norm=False, num_classes=0, dynamic_img_size=True,
                 drop_path_rate=0.4),
        embed_dims=1024, out_channels=embed),
    neck=dict(type='ChannelMapper', in_channels=[embed] * levels, out_channels=embed,
              kernel_size=1, norm_cfg=dict(type='GN', num_groups=32), act_cfg=None, bias=True,
              num_outs=levels),
    text_encoder=dict(type='OpenCLIPTextEncoder', model_name='EVA02-E-14-plus',
                      templates=('{}',), frozen=True),
    encoder=dict(
        type='ape.VLDeformableEncoder', num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=8, num_levels=levels, num_points=4,
                               dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=2048, ffn_drop=0.0)),
        fusion_cfg=dict(type='ape.BiAttentionBlock', v_dims=embed, l_dims=text_dims,
                        embed_dims=2048, num_heads=8, dropout=0.1, init_values=1.0 / 6,
                        stable_softmax_2d=True, with_checkpoint=True)),
    decoder=dict(
        num_layers=6, return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=8, dropout=0.0, batch_first=True),
            cross_attn_cfg=dict(embed_dims=embed, num_heads=8, num_levels=levels, num_points=4,
                                dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=2048, ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=embed // 2, normalize=True, offset=-0.5),
    num_queries=900, num_feature_levels=levels, negative_bank_size=256,
    mask_in_index=0, mask_in_channels=embed, mask_norm_groups=32,
    proposal_nms=True, proposal_pre_nms_topk=1000, proposal_nms_thr=0.9,
    proposal_ambiguous=1,
    criterion=dict(type='ape.APECriterion'),
    test_cfg=dict(topk=300, nms_thr=0.7, instance_on=True, semantic_on=True,
                  panoptic_on=False))

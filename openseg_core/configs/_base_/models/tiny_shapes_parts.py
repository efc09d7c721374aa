# The image side of the tiny models that train on `shapes` on a 2-core CPU in minutes (the
# core's reference model and the plugins' tiny configs): ResNet-18 at 1/4 width, a 2-layer
# deformable pixel decoder and a 4-layer masked-attention decoder stack, width 64.
embed = 64
tiny_data_preprocessor = dict(
    type='MultiTaskDataPreprocessor', mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32, pad_mask=True,
    mask_pad_value=0, pad_seg=True, seg_pad_value=255)
# The small CLIP trained on `shapes` image-caption pairs (docs/pretrained_clip.md), built once
# into the openseg cache by `openseg pretrain-clip` (or the first command that needs it).
shapes_clip = 'openseg://shapes_clip'
shapes_clip_text_encoder = dict(type='OpenCLIPTextEncoder', model_name='ShapesCLIP-RN',
                                pretrained=shapes_clip, frozen=True)
# Its image tower as a frozen backbone (FC-CLIP): strides 4-32, 64-512 channels; the input
# normalised with CLIP's mean and std, as the tower was trained.
shapes_clip_backbone = dict(type='OpenCLIPImageBackbone', model_name='ShapesCLIP-RN',
                            pretrained=shapes_clip, frozen=True)
shapes_clip_channels = [64, 128, 256, 512]
# open_clip's OPENAI_DATASET_MEAN / STD, in 0-255.
clip_data_preprocessor = dict(
    tiny_data_preprocessor, mean=[122.770938, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305])
tiny_backbone = dict(type='ResNet', depth=18, base_channels=16, num_stages=4,
                     out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_cfg=dict(type='BN'),
                     norm_eval=False, style='pytorch')
tiny_pixel_decoder = dict(
    type='MSDeformAttnPixelDecoder', in_channels=[16, 32, 64, 128], strides=[4, 8, 16, 32],
    feat_channels=embed, out_channels=embed, num_outs=3,
    norm_cfg=dict(type='GN', num_groups=16), act_cfg=dict(type='ReLU'),
    encoder=dict(num_layers=2, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=embed, num_heads=4, num_levels=3, num_points=4,
                           dropout=0.0, batch_first=True),
        ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, num_fcs=2,
                     ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True)))),
    positional_encoding=dict(num_feats=embed // 2, normalize=True))
tiny_transformer_decoder = dict(
    num_layers=4, return_intermediate=True,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=embed, num_heads=4, dropout=0.0, batch_first=True),
        cross_attn_cfg=dict(embed_dims=embed, num_heads=4, dropout=0.0, batch_first=True),
        ffn_cfg=dict(embed_dims=embed, feedforward_channels=4 * embed, num_fcs=2,
                     ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True))),
    init_cfg=None)
# Mask2Former's losses and matching costs on 1024 points (the paper's 12544 at 512 px ~ this
# share of a 128 px image). Softmax classification with "no object"; for a sigmoid classifier
# swap loss_cls for mmdet.FocalLoss and the class cost for FocalLossCost.
tiny_criterion = dict(
    type='MaskClassificationCriterion',
    matcher=dict(type='HungarianMatcher', num_points=1024, match_costs=[
        dict(type='ClassificationCost', weight=2.0),
        dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
        dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)]),
    loss_cls=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
    loss_mask=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, loss_weight=5.0),
    loss_dice=dict(type='mmdet.DiceLoss', use_sigmoid=True, activate=True, naive_dice=True,
                   eps=1.0, loss_weight=5.0),
    no_object_weight=0.1, num_points=1024, oversample_ratio=3.0, importance_sample_ratio=0.75)
# The schedule: AdamW, 100 warm-up iterations, cosine to 1e-5; frozen parts stay out of the
# optimizer.
tiny_optim_wrapper = dict(
    type='OptimWrapper', constructor='FrozenAwareOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=1.0, norm_type=2))

# ODISE at the paper's scale (the official odise_{label,caption}_coco_50e): Stable Diffusion
# v1.3's UNet and VAE, CLIP ViT-L/14-336 (implicit captioner, class / noun embeddings, MaskCLIP
# head), 512 x 512 windows, 100 queries, 9 decoder layers, hidden 256, a 6-layer MSDeformAttn
# pixel decoder (GN), Mask2Former's losses on 12544 points. Every pretrained part is a local
# file (docs/plugins/odise.md, "Pretrained files"); nothing is downloaded.
# Local files: put them here (or override with --cfg-options).
sd_checkpoint = 'checkpoints/stable-diffusion-v1-3/sd-v1-3.ckpt'
clip_checkpoint = 'checkpoints/clip-vit-l-14-336/open_clip_pytorch_model.bin'
clip_name = 'ViT-L-14-336-quickgelu'  # the OpenAI weights use QuickGELU

hidden = 256
odise_data_preprocessor = dict(
    type='MultiTaskDataPreprocessor', mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],
    bgr_to_rgb=True, pad_size_divisor=64, pad_mask=True, mask_pad_value=0, pad_seg=True,
    seg_pad_value=255)
paper_backbone = dict(
    type='odise.DiffusionBackbone',
    # SD v1's architectures (openseg_odise.models.diffusion.stable_diffusion.SD_V1_*).
    extractor=dict(unet='sd-v1', vae='sd-v1', text_encoder='sd-v1',
                   pretrained=sd_checkpoint, timestep=0, noise_size=(64, 64),
                   encoder_block_indices=(5, 7), unet_block_indices=(2, 5, 8, 11),
                   decoder_block_indices=(2, 5), stop_early=True),
    captioner=dict(image_encoder=dict(type='MaskCLIP', model_name=clip_name,
                                      pretrained=clip_checkpoint, frozen=True)),
    window_size=512, input_size=512, projection_dim=512, norm_groups=32, with_cp=True)
paper_pixel_decoder = dict(
    type='MSDeformAttnPixelDecoder', in_channels=[512] * 4, strides=[4, 8, 16, 32],
    feat_channels=hidden, out_channels=hidden, num_outs=3,
    norm_cfg=dict(type='GN', num_groups=32), act_cfg=dict(type='ReLU'),
    encoder=dict(num_layers=6, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=hidden, num_heads=8, num_levels=3, num_points=4,
                           dropout=0.0, batch_first=True),
        ffn_cfg=dict(embed_dims=hidden, feedforward_channels=1024, num_fcs=2, ffn_drop=0.0,
                     act_cfg=dict(type='ReLU', inplace=True)))),
    positional_encoding=dict(num_feats=hidden // 2, normalize=True))
paper_query_decoder = dict(
    type='MaskedAttentionQueryDecoder', num_queries=100, embed_dims=hidden,
    memory_channels=hidden, num_feature_levels=3,
    transformer_decoder=dict(
        num_layers=9, return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=hidden, num_heads=8, dropout=0.0, batch_first=True),
            cross_attn_cfg=dict(embed_dims=hidden, num_heads=8, dropout=0.0,
                                batch_first=True),
            ffn_cfg=dict(embed_dims=hidden, feedforward_channels=2048, num_fcs=2,
                         ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True))),
        init_cfg=None))
paper_text_encoder = dict(type='OpenCLIPTextEncoder', model_name=clip_name,
                          pretrained=clip_checkpoint, frozen=True)
paper_mask_embed = dict(type='odise.PooledMaskEmbed', mask_dim=hidden, hidden_dim=hidden,
                        embed_dim=hidden)
paper_criterion = dict(
    type='MaskClassificationCriterion',
    matcher=dict(type='HungarianMatcher', num_points=12544, match_costs=[
        dict(type='ClassificationCost', weight=2.0),
        dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
        dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)]),
    loss_cls=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
    loss_mask=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, loss_weight=5.0),
    loss_dice=dict(type='mmdet.DiceLoss', use_sigmoid=True, activate=True, naive_dice=True,
                   eps=1.0, loss_weight=5.0),
    no_object_weight=0.1, num_points=12544, oversample_ratio=3.0,
    importance_sample_ratio=0.75)
# Official panoptic inference: every query kept (object threshold 0), overlap 0.8, top 100.
paper_postprocessor = dict(type='MaskPostProcessor', panoptic_on=True, semantic_on=True,
                           instance_on=True, object_mask_thr=0.0, iou_thr=0.8,
                           max_per_image=100)
# AdamW 1e-4, weight decay 0.05 (none on norms and biases), gradient clipping at 0.01 (the
# official value), 92,188 iterations of 64 images at 1024 x 1024.
paper_optim_wrapper = dict(
    type='OptimWrapper', constructor='FrozenAwareOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))

# COCO panoptic laid out as data/coco/{train2017,val2017,annotations/...}; the official large-
# scale jitter at 1024 (scale 0.1-2.0, 1024 x 1024 crops, flips) and test scale (shorter side
# 1024, longer <= 2560). The official run: 64 images per iteration on 8 GPUs.
data_root = 'data/coco/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=(1024, 1024), ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(1024, 1024), crop_type='absolute',
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='PackOpenSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 1024), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='PackOpenSegInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
coco_train = dict(type='OpenVocabPanopticDataset', data_root=data_root,
                  ann_file='annotations/panoptic_train2017.json',
                  data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
                  filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline)
train_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True), dataset=coco_train)
val_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='OpenVocabPanopticDataset', data_root=data_root,
                 ann_file='annotations/panoptic_val2017.json',
                 data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='OpenVocabPanopticMetric', ann_file=data_root + 'annotations/panoptic_val2017.json',
         seg_prefix=data_root + 'annotations/panoptic_val2017/', nproc=2),
    dict(type='SemSegMetric', iou_metrics=['mIoU']),
    dict(type='OpenVocabCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json',
         metric=['segm']),
]
test_evaluator = val_evaluator
max_iters = 92188
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# The official schedule assumes 184,375 iterations (100 epochs) and stops at half of them.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.067, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[163889, 177546], gamma=0.1),
]

# Paper-scale reference model (Mask2Former R50 sizes): ResNet-50, 6 deformable encoder layers,
# 9 masked-attention decoder layers, 100 queries, 12544 points, CLIP ViT-B/16 text tower.
# Trains on COCO panoptic laid out as data/coco/{train2017,val2017,annotations/...}.
# Pretrained parts load from local files: set model.backbone.init_cfg.checkpoint and
# model.text_encoder.pretrained (e.g. open_clip's ViT-B-16 openai .pt/.bin file).
_base_ = ['./ovseg_tiny_shapes_scratch.py']

embed = 256
data_root = 'data/coco/'
model = dict(
    # NHWC convolutions: faster on oneDNN and tensor cores, the same results.
    channels_last=True,
    backbone=dict(depth=50, base_channels=64, frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, init_cfg=None),
    pixel_decoder=dict(
        in_channels=[256, 512, 1024, 2048], feat_channels=embed, out_channels=embed,
        norm_cfg=dict(type='GN', num_groups=32),
        encoder=dict(num_layers=6, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=8),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=1024))),
        positional_encoding=dict(num_feats=embed // 2)),
    query_decoder=dict(
        num_queries=100, embed_dims=embed, memory_channels=embed,
        transformer_decoder=dict(num_layers=9, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed, num_heads=8),
            cross_attn_cfg=dict(embed_dims=embed, num_heads=8),
            ffn_cfg=dict(embed_dims=embed, feedforward_channels=2048)))),
    text_encoder=dict(model_name='ViT-B-16', embed_dim=512, text_cfg=None, pretrained=None),
    # CLIP's initial temperature: pretrained text embeddings are well spread.
    head=dict(in_channels=embed, embed_dim=512, init_temperature=0.07),
    criterion=dict(num_points=12544, matcher=dict(num_points=12544)),
    postprocessor=dict(object_mask_thr=0.8, max_per_image=100))

# Mask2Former's large-scale jitter at 1024 would follow mmdet's coco-panoptic recipe; this
# config keeps the pipeline of the base and only swaps the data.
train_dataloader = dict(batch_size=2, dataset=dict(
    data_root=data_root, ann_file='annotations/panoptic_train2017.json',
    data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/')))
# Mask2Former's COCO test scale (mmdet's coco-panoptic recipe): shorter side 800, longer <= 1333.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args=None),
    dict(type='PackOpenSegInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(batch_size=1, dataset=dict(
    data_root=data_root, ann_file='annotations/panoptic_val2017.json',
    data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
    pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='OpenVocabPanopticMetric', ann_file=data_root + 'annotations/panoptic_val2017.json',
         seg_prefix=data_root + 'annotations/panoptic_val2017/', nproc=2),
    dict(type='SemSegMetric', iou_metrics=['mIoU']),
    dict(type='OpenVocabCocoMetric', ann_file=data_root + 'annotations/instances_val2017.json',
         metric=['segm']),
]
test_evaluator = val_evaluator
max_iters = 368750
train_cfg = dict(max_iters=max_iters, val_interval=5000)
optim_wrapper = dict(optimizer=dict(lr=1e-4), clip_grad=dict(max_norm=0.01),
                     paramwise_cfg=dict(custom_keys=dict(
                         backbone=dict(lr_mult=0.1, decay_mult=1.0),
                         query_feat=dict(lr_mult=1.0, decay_mult=0.0),
                         query_pos=dict(lr_mult=1.0, decay_mult=0.0),
                         level_embed=dict(lr_mult=1.0, decay_mult=0.0))))
param_scheduler = [dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
                        milestones=[327778, 355092], gamma=0.1)]

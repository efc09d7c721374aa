# The released referring-segmentation model (configs/t5/pixel_llm_t5_refseg.py): referring
# localization (box from the end-token state, point loss only) plus SAM-H's frozen mask
# decoder on the box with the trainable zero-gated mask adapter (focal x 20 + dice + IoU
# loss). RefCOCO (refs(unc).p + instances.json) under data/refcoco/, COCO train2014 images.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_paper.py']

model = dict(
    mask_head=dict(type='pixelllm.SamMaskHead', pretrained={{_base_.sam_dir}},
                   adapter=dict(embed_dims=256, depth=2, num_heads=8, mlp_dims=2048)),
    mask_feature='sam',
    test_cfg=dict(beam_size=3))
meta = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
crop = 384
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(crop, crop), keep_ratio=True),
    dict(type='SetTask', task='referring'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
# Boxes and masks loaded after the resize stay in original pixels, as the metrics need.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(crop, crop), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SetTask', task='referring'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta + ('gt_bboxes', 'gt_masks')),
]
train_dataloader = dict(
    batch_size=64, num_workers=8, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ReferringDataset', data_root='data/refcoco/', refs_file='refs(unc).p',
                 split='train', ann_file='data/refcoco/instances.json',
                 data_prefix=dict(img='data/coco/train2014/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ReferringDataset', data_root='data/refcoco/', refs_file='refs(unc).p',
                 split='val', ann_file='data/refcoco/instances.json', test_mode=True,
                 data_prefix=dict(img='data/coco/train2014/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='ReferringLocalizationMetric'), dict(type='ReferringSegMetric')]
test_evaluator = val_evaluator
max_iters = 120000
train_cfg = dict(max_iters=max_iters, val_interval=10000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=1000, end=max_iters, eta_min=0.0),
]

# A small CLIP (open_clip's ShapesCLIP-RN: ModifiedResNet image tower, 2-layer text tower,
# embed 64) trained contrastively on the image-caption split of `shapes`
# (`openseg shapes data/shapes --pretrain 5000`), and its zero-shot top-1 on crops of single
# shapes and stuff patches of `val` and `val_open` ("a photo of a {}."). `openseg pretrain-clip`
# runs this config once and caches the weights (docs/pretrained_clip.md).
default_scope = 'openseg_core'
data_root = 'data/shapes/'
image_size = 64  # the architecture's (ShapesCLIP-RN.json); images and crops are resized to it

model = dict(
    type='ContrastiveCLIP', model_name='ShapesCLIP-RN', templates=('a photo of a {}.',),
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # open_clip's OPENAI_DATASET_MEAN / STD on 0-255 images; files load as BGR.
        mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323], bgr_to_rgb=True))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape')),
]
crop_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CropToBox'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='PackOpenSegInputs',
         meta_keys=('img_id', 'img_path', 'crop_box', 'gt_label', 'group', 'ori_shape',
                    'img_shape')),
]
train_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoCaptionsDataset', data_root=data_root,
                 ann_file='annotations/captions_pretrain.json',
                 data_prefix=dict(img='images/pretrain/'), pipeline=train_pipeline))


def _crops(split):
    return dict(type='ObjectCropsDataset', data_root=data_root,
                ann_file=f'annotations/instances_{split}.json',
                stuff_ann_file=f'annotations/panoptic_{split}.json',
                data_prefix=dict(img=f'images/{split}/', seg=f'annotations/panoptic_{split}/'),
                test_mode=True, pipeline=crop_pipeline)


# Seen classes come from both splits, held-out ones from val_open only.
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[_crops('val'), _crops('val_open')]))
test_dataloader = val_dataloader
val_evaluator = dict(type='ZeroShotCropMetric')
test_evaluator = val_evaluator

max_iters = 1500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# CLIP's recipe: AdamW, no weight decay on gains, biases and the temperature, warm-up + cosine.
optim_wrapper = dict(
    # fused: one kernel for all parameters, 5x faster steps on CPU (the 3.2M-entry token
    # embedding is most of the model).
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                                        weight_decay=0.1, fused=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'logit_scale': dict(decay_mult=0.0),
                                    'positional_embedding': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min=1e-5),
]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [dict(type='VocabularyHook'), dict(type='ResumeStateHook')]
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)

# Fine-tune APE on your own data, config only: a COCO-format detection / instance
# segmentation set (instances JSON: boxes, polygons or RLE masks) and a RefCOCO-format
# grounding set (refs JSON or the original refs(unc).p + the instances JSON it points into),
# trained together as APE trains its sources (each iteration: 3 detection + 1 grounding
# samples). Copy this file, change its second base to 'ape::_base_/ape_tiny.py' (a copy
# outside the package does not see the relative path), set `data_root`, the file names and
# `classes`, then
#   python tools/train.py my_ape_data.py --work-dir work_dirs/mine \
#       --cfg-options load_from=/path/to/start.pth
# (`load_from`: an APE checkpoint to fine-tune, e.g. ape_tiny_shapes.py's). It stands on the
# tiny model so that it runs on a CPU; for the paper-scale model replace both bases with
# 'ape::ape_vitl_paper.py' (it holds the runtime already; two bases may not share keys) and
# start from a converted official checkpoint (docs/plugins/ape.md); that variant is not tested.
# Evaluation: box and mask AP on the detection set's val split.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/ape_tiny.py']

data_root = 'data/my_data/'
# Your detection classes, in any order (a subset of the file's categories is fine). Labels
# index them; they are the model's vocabulary (thing_classes: APE needs no stuff list).
classes = ('cat', 'dog')
detection_metainfo = dict(classes=classes, thing_classes=classes)

detection_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='SetTask', task='generic'),
    dict(type='PackOpenSegInputs'),
]
grounding_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='ape.SampleGroundingPhrases', nms_thr=0.6, max_phrases=128),
    dict(type='SetTask', task='grounding'),
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                              'scale_factor', 'phrases')),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                              'scale_factor')),
]
detection_train = dict(type='CocoDataset', data_root=data_root, metainfo=detection_metainfo,
                       ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='images/train/'),
                       filter_cfg=dict(filter_empty_gt=True), pipeline=detection_pipeline)
grounding_train = dict(type='ape.GroundingDataset', data_root=data_root,
                       refs_file='annotations/refs_train.json', split='train',
                       ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='images/train/'), pipeline=grounding_pipeline)
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=4, source_ratio=[3, 1]),
    dataset=dict(type='ConcatDataset', ignore_keys=['classes', 'thing_classes', 'palette'],
                 datasets=[detection_train, grounding_train]))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=detection_metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='images/val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='OpenVocabCocoMetric', metric=['bbox', 'segm'],
                      ann_file=data_root + 'annotations/instances_val.json')]
test_evaluator = val_evaluator
# Boxes and masks only: no semantic or panoptic output without stuff annotations.
model = dict(test_cfg=dict(semantic_on=False, panoptic_on=False))

optim_wrapper = dict(
    type='OptimWrapper', constructor='FrozenAwareOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'sampling_offsets': dict(lr_mult=0.1),
                                    'reference_points': dict(lr_mult=0.1)}),
    clip_grad=dict(max_norm=0.1, norm_type=2))
max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50)]

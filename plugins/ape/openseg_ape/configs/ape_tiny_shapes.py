# APE's single-stage multi-source training in miniature on `shapes`: every iteration holds 3
# panoptic samples (things and the stuff regions split into instances: detection + instance
# + semantic + panoptic supervision) and 1 image-centric grounding sample (all phrases of an
# image), via mmdet's MultiSourceSampler. Validation: box AP, mask AP, PQ, mIoU on `val`.
# Referring comprehension / segmentation of the same checkpoint:
#   python tools/test.py ape::ape_tiny_shapes_referring.py CKPT
_base_ = ['openseg_core::_base_/shapes_panoptic.py',
          'openseg_core::_base_/default_runtime.py', '_base_/ape_tiny.py',
          '_base_/shapes_grounding.py']

panoptic_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='ape.StuffToInstances', min_area=64),
    dict(type='SetTask', task='generic'),
    dict(type='PackOpenSegInputs'),
]
panoptic_train = dict(type='OpenVocabPanopticDataset', data_root='data/shapes/',
                      ann_file='annotations/panoptic_train.json',
                      data_prefix=dict(img='images/train/', seg='annotations/panoptic_train/'),
                      # Held out: their names are not even negatives in training.
                      exclude_classes=('diamond', 'star'),
                      filter_cfg=dict(filter_empty_gt=False), pipeline=panoptic_pipeline)
panoptic_batch, grounding_batch = 3, 1
batch_size = panoptic_batch + grounding_batch
train_dataloader = dict(
    _delete_=True, batch_size=batch_size, num_workers=1, persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size,
                 source_ratio=[panoptic_batch, grounding_batch]),
    dataset=dict(type='ConcatDataset',
                 # The vocabulary (thing/stuff classes) is the panoptic set's, the first.
                 ignore_keys=['classes', 'thing_classes', 'stuff_classes', 'palette',
                              'dataset_type', 'task_name'],
                 datasets=[panoptic_train, {{_base_.grounding_train}}]))
val_evaluator = [
    dict(type='OpenVocabPanopticMetric', ann_file='data/shapes/annotations/panoptic_val.json',
         seg_prefix='data/shapes/annotations/panoptic_val/', nproc=1,
         class_groups=dict(held_out=('diamond', 'star'))),
    dict(type='SemSegMetric', iou_metrics=['mIoU']),
    dict(type='OpenVocabCocoMetric', ann_file='data/shapes/annotations/instances_val.json',
         metric=['bbox', 'segm']),
]
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='OptimWrapper', constructor='FrozenAwareOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    # APE: x0.1 for the deformable attention's sampling offsets and reference points.
    paramwise_cfg=dict(custom_keys={'sampling_offsets': dict(lr_mult=0.1),
                                    'reference_points': dict(lr_mult=0.1)}),
    clip_grad=dict(max_norm=0.1, norm_type=2))
max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, milestones=[int(0.8 * max_iters)], gamma=0.1,
         begin=0, end=max_iters),
]

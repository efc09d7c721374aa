# The generated shapes world (``openseg shapes data/shapes``) in COCO-panoptic form.
# ``train`` and ``val`` hold the seen classes; ``val_open`` adds the held-out ones, which
# the loaders exclude from the vocabulary here (set exclude_classes=[] to test on them).
dataset_type = 'OpenVocabPanopticDataset'
data_root = 'data/shapes/'
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args=backend_args),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackOpenSegInputs'),
]
# Test-time resizing, as mmdet's: the longer side to 128 px (the side the tiny models train at),
# aspect ratio kept; results are mapped back to each image's own size. Inference
# (Segmenter, tools/demo.py) runs the same resizing.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args=backend_args),
    dict(type='PackOpenSegInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/panoptic_train.json',
                 data_prefix=dict(img='images/train/', seg='annotations/panoptic_train/'),
                 # Held out: their names are not even negatives in training.
                 exclude_classes=('diamond', 'star'),
                 filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline,
                 backend_args=backend_args))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='annotations/panoptic_val.json',
                 data_prefix=dict(img='images/val/', seg='annotations/panoptic_val/'),
                 exclude_classes=('diamond', 'star'), test_mode=True, pipeline=test_pipeline,
                 backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = [
    dict(type='OpenVocabPanopticMetric', ann_file=data_root + 'annotations/panoptic_val.json',
         seg_prefix=data_root + 'annotations/panoptic_val/', nproc=1,
         # PQ over the held-out classes alone (nan where they are not in the vocabulary).
         class_groups=dict(held_out=('diamond', 'star')), backend_args=backend_args),
    dict(type='SemSegMetric', iou_metrics=['mIoU']),
    dict(type='OpenVocabCocoMetric', ann_file=data_root + 'annotations/instances_val.json',
         metric=['segm'], backend_args=backend_args),
]
test_evaluator = val_evaluator

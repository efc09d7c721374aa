# `shapes` RefCOCO-style referring expressions (refs_*.json + instances_*.json).
# No flipping: phrases say "on the left".
referring_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SetTask', task='referring'),
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                              'img_shape', 'scale_factor')),
]
referring_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SetTask', task='referring'),
    # The metric scores the full-resolution target mask: keep it in the metainfo.
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                              'img_shape', 'scale_factor', 'gt_masks')),
]
referring_train = dict(type='ReferringDataset', data_root='data/shapes/',
                       refs_file='annotations/refs_train.json', split='train',
                       ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='images/train/'),
                       pipeline=referring_train_pipeline)
referring_val = dict(type='ReferringDataset', data_root='data/shapes/',
                     refs_file='annotations/refs_val.json', split='val',
                     ann_file='annotations/instances_val.json',
                     data_prefix=dict(img='images/val/'), test_mode=True,
                     pipeline=referring_test_pipeline)
referring_evaluator = [dict(type='ReferringSegMetric')]

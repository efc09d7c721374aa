# `shapes` referring expressions (RefCOCO format) as APE's image-centric grounding samples:
# every phrase of an image in one sample, one phrase per object kept at random. No flipping:
# phrases say "on the left".
grounding_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='ape.SampleGroundingPhrases', nms_thr=0.6, max_phrases=128),
    dict(type='SetTask', task='grounding'),
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                              'scale_factor', 'phrases')),
]
grounding_train = dict(type='ape.GroundingDataset', data_root='data/shapes/',
                       refs_file='annotations/refs_train.json', split='train',
                       ann_file='annotations/instances_train.json',
                       data_prefix=dict(img='images/train/'), pipeline=grounding_pipeline)
# One sample per expression for evaluation (RefCOCO's protocol): its best box (P@0.5) and
# mask (cIoU).
referring_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='SetTask', task='referring'),
    # The metrics score the full-resolution targets: keep them in the metainfo.
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                              'scale_factor', 'gt_masks', 'gt_bboxes')),
]
referring_val = dict(type='ReferringDataset', data_root='data/shapes/',
                     refs_file='annotations/refs_val.json', split='val',
                     ann_file='annotations/instances_val.json',
                     data_prefix=dict(img='images/val/'), test_mode=True,
                     pipeline=referring_test_pipeline)
referring_evaluator = [dict(type='ReferringSegMetric'),
                       dict(type='ReferringLocalizationMetric')]

# `shapes` COCO-style captions: image-text pairs for captioning and retrieval.
caption_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='SetTask', task='captioning'),
    dict(type='PackOpenSegInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                              'scale_factor')),
]
captions_train = dict(type='CocoCaptionsDataset', data_root='data/shapes/',
                      ann_file='annotations/captions_train.json',
                      data_prefix=dict(img='images/train/'), pipeline=caption_pipeline)
captions_val = dict(type='CocoCaptionsDataset', data_root='data/shapes/',
                    ann_file='annotations/captions_val.json',
                    data_prefix=dict(img='images/val/'), test_mode=True,
                    pipeline=caption_pipeline)
captions_evaluator = [dict(type='CaptionMetric'), dict(type='RetrievalMetric')]

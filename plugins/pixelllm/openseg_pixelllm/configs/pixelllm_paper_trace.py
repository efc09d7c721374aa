# The released trace model (configs/t5/pixel_llm_t5_trace.py): COCO captions (weight 1) and
# Localized Narratives on COCO (weight 2), 384-px images, batch 256, AdamW 5e-5, cosine,
# 250 warm-up iterations, 10k iterations. Data: COCO 2017 images under data/coco/, the LN
# JSONL files (coco_train_localized_narratives.jsonl, ...) under data/coco/annotations/.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_paper.py']

meta = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
crop = 384
narrative_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(crop, crop), keep_ratio=True),
    dict(type='pixelllm.LoadNarrativeTargets'),
    dict(type='SetTask', task='narrative'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
caption_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(crop, crop), keep_ratio=True),
    dict(type='SetTask', task='captioning'),
    dict(type='pixelllm.PackPixelLLMInputs', meta_keys=meta),
]
narrative_batch, caption_batch = 170, 86
batch_size = narrative_batch + caption_batch
train_dataloader = dict(
    batch_size=batch_size, num_workers=8, persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size,
                 source_ratio=[narrative_batch, caption_batch]),
    dataset=dict(type='ConcatDataset', ignore_keys=['classes', 'dataset_type', 'task_name'],
                 datasets=[
                     dict(type='pixelllm.NarrativesDataset', data_root='data/coco/',
                          ann_file='annotations/coco_train_localized_narratives.jsonl',
                          image_name='{:012d}.jpg', word_boxes='interpolated',
                          data_prefix=dict(img='train2017/'), pipeline=narrative_pipeline),
                     dict(type='CocoCaptionsDataset', data_root='data/coco/',
                          ann_file='annotations/captions_train2017.json',
                          data_prefix=dict(img='train2017/'), pipeline=caption_pipeline)]))
val_dataloader = dict(
    batch_size=8, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='pixelllm.NarrativesDataset', data_root='data/coco/',
                 ann_file='annotations/coco_val_localized_narratives.jsonl',
                 image_name='{:012d}.jpg', word_boxes='interpolated',
                 data_prefix=dict(img='val2017/'), test_mode=True, pipeline=narrative_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='CaptionMetric')]
test_evaluator = val_evaluator

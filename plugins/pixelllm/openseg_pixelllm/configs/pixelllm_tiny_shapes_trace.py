# Traced captioning on `shapes`: a caption and, for every word, the point it talks about.
# Trained as the released trace model is: Localized Narratives (caption + trace) and COCO
# captions (caption only) mixed 2 : 1 in every batch; evaluated on the narratives of val
# (BLEU-4 / CIDEr against the narrative, and the trace: the share of object words whose point
# falls in that object's mask, and the teacher-forced L1 of the word boxes in pixels).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_tiny.py',
          '_base_/shapes_data.py']

narrative_batch, caption_batch = 8, 4
batch_size = narrative_batch + caption_batch
train_dataloader = dict(
    batch_size=batch_size, num_workers=1, persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size,
                 source_ratio=[narrative_batch, caption_batch]),
    dataset=dict(type='ConcatDataset', ignore_keys=['classes', 'dataset_type', 'task_name'],
                 datasets=[{{_base_.narratives_train}}, {{_base_.captions_train}}]))
val_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset={{_base_.narratives_val}})
test_dataloader = val_dataloader
val_evaluator = [dict(type='CaptionMetric'), dict(type='TraceQualityMetric')]
test_evaluator = val_evaluator
model = dict(test_cfg=dict(forced_trace=True))

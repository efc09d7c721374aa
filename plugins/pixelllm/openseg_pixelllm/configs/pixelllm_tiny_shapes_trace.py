# Traced captioning on `shapes`: a caption and, for every word, the point it talks about.
# Trained as the released trace model is: Localized Narratives (caption + trace) and COCO
# captions (caption only) mixed 2 : 1 in every batch; evaluated on the narratives of val
# (BLEU-4 / CIDEr against the narrative, and the trace: the share of object words whose point
# falls in that object's mask, and the teacher-forced L1 of the word boxes in pixels).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_tiny.py',
          '_base_/shapes_data.py']

# Trained on 16,000 images (`_base_/shapes_data.py`, `data/shapes_16k`), evaluated on
# `data/shapes`.
narrative_batch, caption_batch = 8, 4
batch_size = narrative_batch + caption_batch
train_dataloader = dict(
    batch_size=batch_size, num_workers=1, persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size,
                 source_ratio=[narrative_batch, caption_batch]),
    dataset=dict(type='ConcatDataset', ignore_keys=['classes', 'dataset_type', 'task_name'],
                 datasets=[{{_base_.narratives_train_16k}}, {{_base_.captions_train_16k}}]))
val_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset={{_base_.narratives_val}})
test_dataloader = val_dataloader
val_evaluator = [dict(type='CaptionMetric'), dict(type='TraceQualityMetric')]
test_evaluator = val_evaluator
model = dict(prompt_extractor={{_base_.locating_extractor}}, test_cfg=dict(forced_trace=True))
# The learnable tokens learn to gather where each object is slowly (as DETR's queries do):
# five times the other tasks' schedule, about 20 minutes alone on the 2-core CPU.
max_iters = 16000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]

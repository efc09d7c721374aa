# Referring localization and segmentation on `shapes`: "where is {expression}" in the encoder,
# [start, expression] teacher-forced in the decoder; the box comes from the state that predicts
# the end token (point loss only, as the official task mask), the mask from a SAM-style mask
# decoder on that box with PixelLLM's zero-gated adapter (random and trained here: `shapes`
# has no SAM). Metrics: Acc@0.5 of the box, cIoU of the mask.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_tiny.py',
          '_base_/shapes_data.py']
# The paper's recipe: start from the model trained on narratives (captions + a point per word),
# where `python tools/train.py pixelllm::pixelllm_tiny_shapes_trace.py` writes it; the mask head
# is new, hence the partial load. From scratch (`--cfg-options load_from=None`) the boxes stayed
# at the mean box (docs/plugins/pixelllm.md, Figures).
load_from = 'work_dirs/pixelllm_tiny_shapes_trace/iter_16000.pth'
load_strict = False

model = dict(
    prompt_extractor={{_base_.locating_extractor}},
    mask_head=dict(type='pixelllm.SamMaskHead',
                   decoder=dict(depth=2, num_heads=4, mlp_dims=256, iou_hidden_dims=64),
                   adapter=dict(depth=2, num_heads=4, mlp_dims=256)),
    task_losses=dict(referring=('point', 'mask')))
train_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True,
                        sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset={{_base_.referring_train}})
val_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset={{_base_.referring_val}})
test_dataloader = val_dataloader
val_evaluator = [dict(type='ReferringLocalizationMetric'), dict(type='ReferringSegMetric')]
test_evaluator = val_evaluator

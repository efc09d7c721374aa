# Location-conditioned captioning on `shapes`: a referred object's box as the location prompt,
# its referring sentence as the caption ("an object of" as context). Metrics: CIDEr against
# the object's sentences, and whether the caption names the object's colour and shape.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_tiny.py',
          '_base_/shapes_data.py']

train_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True,
                        sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset={{_base_.loc_caption_train}})
val_dataloader = dict(batch_size=16, num_workers=1, persistent_workers=True, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset={{_base_.loc_caption_val}})
test_dataloader = val_dataloader
val_evaluator = [dict(type='CaptionMetric'),
                 dict(type='CaptionKeywordMetric',
                      groups=dict(colour={{_base_.colours}}, shape={{_base_.shapes}}))]
test_evaluator = val_evaluator

# Location-conditioned captioning on `shapes`: a referred object's box as the location prompt,
# its referring sentence as the caption ("an object of" as context). Metrics: CIDEr against
# the object's sentences, and whether the caption names the object's colour and shape.
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/pixelllm_tiny.py',
          '_base_/shapes_data.py']

# Naming a boxed object's shape needs features that tell shapes apart: the small CLIP sees the
# image at 256 px and gives its stride-16 and stride-32 maps (the same 16 x 16 grid). A linear
# probe on box-pooled features separates the seen shapes for 75 % of `val` objects this way,
# 59 % from the 128 px stride-8 and stride-16 maps; both colour and shape right: 30.3 -> 47.0 %
# (docs/plugins/pixelllm.md, Figures). Traced captioning and referring did not gain from it.
# The extractor reads only the grid cells under the box (`box_attention`): from the prompt
# tokens alone it does not learn to isolate the boxed object with a frozen encoder, and named
# both colour and shape for 47.0 % of boxes, 79.5 % with it (docs/plugins/pixelllm.md, Figures).
model = dict(image_encoder=dict(encoders=dict(clip=dict(scale_factor=2.0, out_indices=(2, 3)))),
             prompt_extractor=dict(box_attention=True))

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

# X-Decoder referring segmentation on `shapes` refs (cIoU, mIoU, Pr@0.5/0.7/0.9).
_base_ = ['openseg_core::_base_/default_runtime.py', '_base_/xdecoder_tiny.py',
          '_base_/shapes_referring.py']

model = dict(default_task='referring')
train_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True,
                        sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset={{_base_.referring_train}})
val_dataloader = dict(batch_size=8, num_workers=1, persistent_workers=True, drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset={{_base_.referring_val}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.referring_evaluator}}
test_evaluator = val_evaluator

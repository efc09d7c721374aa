# X-Decoder referring segmentation on `shapes` refs (cIoU, mIoU, Pr@0.5/0.7/0.9).
_base_ = ['../../../configs/_base_/default_runtime.py', '_base_/xdecoder_tiny.py',
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

max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]

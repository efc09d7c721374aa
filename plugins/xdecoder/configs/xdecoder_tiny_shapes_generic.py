# X-Decoder generic (panoptic/semantic/instance) segmentation on `shapes`, the same budget as
# the core's reference model (configs/reference/ovseg_tiny_shapes.py): 2000 iterations of 8.
_base_ = ['../../../configs/_base_/shapes_panoptic.py',
          '../../../configs/_base_/default_runtime.py', '_base_/xdecoder_tiny.py']

max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5),
]

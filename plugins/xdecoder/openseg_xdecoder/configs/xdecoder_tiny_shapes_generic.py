# X-Decoder generic (panoptic/semantic/instance) segmentation on `shapes`, the same budget as
# the core's reference model (openseg_core::reference/ovseg_tiny_shapes.py): 2000 iterations of 8.
_base_ = ['openseg_core::_base_/shapes_panoptic.py',
          'openseg_core::_base_/default_runtime.py', '_base_/xdecoder_tiny.py']

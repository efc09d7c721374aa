# A config shipped in the plugin's package: `example::scaled_head.py` from any directory,
# inheriting the core's runtime by package scope.
_base_ = ['openseg_core::_base_/default_runtime.py']
model = dict(type='example.ScaledHead', scale=3.0)

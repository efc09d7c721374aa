"""The plugin's registries: children of the core's under the scope ``xdecoder``."""
from openseg_core.registry import plugin_registries

_registries = plugin_registries('xdecoder')
MODELS = _registries.MODELS
METRICS = _registries.METRICS
TRANSFORMS = _registries.TRANSFORMS
DATASETS = _registries.DATASETS

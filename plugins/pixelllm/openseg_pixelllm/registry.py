"""The plugin's registries: children of the core's under the scope ``pixelllm``."""
from openseg_core.registry import plugin_registries

_registries = plugin_registries('pixelllm')
MODELS = _registries.MODELS
METRICS = _registries.METRICS
TRANSFORMS = _registries.TRANSFORMS
DATASETS = _registries.DATASETS

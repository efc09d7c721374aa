"""The plugin's registries: children of the core's under the scope ``ape``."""
from openseg_core.registry import plugin_registries

_registries = plugin_registries('ape')
MODELS = _registries.MODELS
DATASETS = _registries.DATASETS
TRANSFORMS = _registries.TRANSFORMS
TASK_UTILS = _registries.TASK_UTILS

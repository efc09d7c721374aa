"""The plugin's registries: children of the core's under the scope ``odise``."""
from openseg_core.registry import plugin_registries

_registries = plugin_registries('odise')
MODELS = _registries.MODELS
DATASETS = _registries.DATASETS

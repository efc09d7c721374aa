"""openseg's registries: children of MMDetection's, under the single scope ``openseg_core``.

Any mmdet / mmcv / mmengine component stays buildable by its plain name from an openseg config
(``type='ResNet'``) because a child registry falls back to its parents. Plugins get their own
child registries, one scope per plugin, so a config can say ``type='xdecoder.XDecoderHead'``
and the scope names the plugin that provides it.
"""
from types import SimpleNamespace

from mmdet import registry as mmdet_registry
from mmengine import registry as mmengine_registry
from mmengine.registry import Registry

# mmengine imports `<default scope>.registry` when it builds, so the scope is the package name.
SCOPE = 'openseg_core'

MODELS = Registry('model', parent=mmdet_registry.MODELS, scope=SCOPE,
                  locations=['openseg_core.models'])
DATASETS = Registry('dataset', parent=mmdet_registry.DATASETS, scope=SCOPE,
                    locations=['openseg_core.datasets'])
TRANSFORMS = Registry('transform', parent=mmdet_registry.TRANSFORMS, scope=SCOPE,
                      locations=['openseg_core.datasets'])
METRICS = Registry('metric', parent=mmdet_registry.METRICS, scope=SCOPE,
                   locations=['openseg_core.evaluation'])
TASK_UTILS = Registry('task util', parent=mmdet_registry.TASK_UTILS, scope=SCOPE,
                      locations=['openseg_core.models'])
HOOKS = Registry('hook', parent=mmdet_registry.HOOKS, scope=SCOPE,
                 locations=['openseg_core.engine'])
VISUALIZERS = Registry('visualizer', parent=mmdet_registry.VISUALIZERS, scope=SCOPE)
# The rest mirror mmdet's so that every build under the ``openseg`` scope finds a registry.
RUNNERS = Registry('runner', parent=mmdet_registry.RUNNERS, scope=SCOPE)
RUNNER_CONSTRUCTORS = Registry('runner constructor', parent=mmdet_registry.RUNNER_CONSTRUCTORS,
                               scope=SCOPE)
LOOPS = Registry('loop', parent=mmdet_registry.LOOPS, scope=SCOPE)
DATA_SAMPLERS = Registry('data sampler', parent=mmdet_registry.DATA_SAMPLERS, scope=SCOPE)
MODEL_WRAPPERS = Registry('model_wrapper', parent=mmdet_registry.MODEL_WRAPPERS, scope=SCOPE)
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=mmdet_registry.WEIGHT_INITIALIZERS,
                               scope=SCOPE)
OPTIMIZERS = Registry('optimizer', parent=mmdet_registry.OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=mmdet_registry.OPTIM_WRAPPERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope=SCOPE)
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=mmdet_registry.PARAM_SCHEDULERS,
                            scope=SCOPE)
EVALUATOR = Registry('evaluator', parent=mmdet_registry.EVALUATOR, scope=SCOPE)
VISBACKENDS = Registry('vis_backend', parent=mmdet_registry.VISBACKENDS, scope=SCOPE)
LOG_PROCESSORS = Registry('log_processor', parent=mmdet_registry.LOG_PROCESSORS, scope=SCOPE)
# mmdet has none: the parent is mmengine's (DDPStrategy, FSDPStrategy, ...); used by
# FlexibleRunner configs (`strategy=`).
STRATEGIES = Registry('strategy', parent=mmengine_registry.STRATEGIES, scope=SCOPE,
                      locations=['openseg_core.engine'])

#: Registries a plugin may register into, by the attribute name it uses.
CORE_REGISTRIES = dict(MODELS=MODELS, DATASETS=DATASETS, TRANSFORMS=TRANSFORMS, METRICS=METRICS,
                       TASK_UTILS=TASK_UTILS, HOOKS=HOOKS, VISUALIZERS=VISUALIZERS)


def plugin_registries(scope: str) -> SimpleNamespace:
    """Child registries of the core ones for one plugin's scope, its entry-point name (created
    once).

    A plugin registers ``@plugin_registries('xdecoder').MODELS.register_module()`` and configs
    name the class ``'xdecoder.ClassName'``. Inside, plain names still resolve to core, mmdet
    and mmengine components through the parent chain.
    """
    if not scope.isidentifier() or scope == SCOPE:
        raise ValueError(f'plugin scope {scope!r} must be a Python identifier other than '
                         f'{SCOPE!r}')
    children = {}
    for attr, parent in CORE_REGISTRIES.items():
        child = parent._children.get(scope)
        children[attr] = child if child is not None else Registry(
            parent.name, parent=parent, scope=scope)
    return SimpleNamespace(**children)

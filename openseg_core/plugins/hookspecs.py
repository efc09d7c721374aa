"""The openseg plugin API. These docstrings are the reference for plugin authors.

A plugin is a module (its *manifest*) holding functions decorated with ``@hookimpl`` whose
names match the specs below; it is announced through the ``openseg.plugins`` entry-point
group. Every hook is optional. The core's own components go through the same path
(``openseg_core.plugins.builtin``), so nothing here is privileged.
"""
import pluggy

PROJECT_NAME = 'openseg'
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def openseg_plugin_info():
    """Describe the plugin.

    Returns:
        dict: ``name`` (the registry scope, e.g. ``'xdecoder'``), ``version`` (str) and
        optionally ``requires`` (list of extra requirement strings, e.g. ``'diffusers>=0.30'``)
        and ``description``.
    """


@hookspec
def openseg_register_modules():
    """Import the plugin's modules so that their ``register_module`` decorators run.

    Register into the registries returned by
    ``openseg_core.registry.plugin_registries(<your scope>)`` so that configs name your
    classes ``'<scope>.ClassName'``. The plugin manager records what each plugin registered
    (``openseg plugins`` lists it) by comparing the registries before and after this call.
    Duplicate names raise: choose names unique in your scope.
    """


@hookspec
def openseg_config_dirs():
    """Return a list of directories holding the plugin's configs (``pathlib.Path`` or str).

    ``tools/train.py`` resolves a config given as ``<scope>::<relative path>`` against them.
    """


@hookspec
def openseg_checkpoint_converters():
    """Return ``{name: callable}`` of checkpoint converters.

    Each callable takes an official checkpoint's state dict (``dict[str, Tensor]``) and returns
    one keyed by the openseg module layout. ``tools/convert_checkpoint.py NAME SRC DST`` runs it.
    """


@hookspec
def openseg_inference_tasks():
    """Return ``{task name: description}`` of the inference tasks the plugin's models support.

    ``tools/demo.py --task`` accepts these names; the core contributes ``panoptic``,
    ``semantic`` and ``instance``.
    """

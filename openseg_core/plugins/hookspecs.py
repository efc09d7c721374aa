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
        dict: ``name`` (optional; if given, the entry-point name, which is also the registry
        scope, e.g. ``'xdecoder'``: the manager refuses a plugin whose names differ),
        ``version`` (str) and optionally ``requires`` (list of extra requirement strings,
        e.g. ``'diffusers>=0.30'``) and ``description``.
    """


@hookspec
def openseg_register_modules():
    """Import the plugin's modules so that their ``register_module`` decorators run.

    Register only into the registries returned by
    ``openseg_core.registry.plugin_registries(<your entry-point name>)`` so that configs name
    your classes ``'<name>.ClassName'``. The plugin manager compares the registries before and
    after this call: it records what each plugin registered (``openseg plugins`` lists it) and
    refuses a plugin that registered into, or created, any other scope. Duplicate names
    raise: choose names unique in your scope.
    """


@hookspec
def openseg_config_dirs():
    """Return a list of directories holding the plugin's configs (``pathlib.Path`` or str).

    Ship them as package data inside the plugin's package, so that they exist wherever it is
    installed. A config named ``'<plugin name>::<path relative to one of them>'`` resolves to
    the first directory that has the file: on the tools' command line, in
    ``openseg_core.inference.Segmenter`` and in ``_base_`` lists, e.g.
    ``_base_ = ['openseg_core::_base_/default_runtime.py']`` for the core's bases.
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


@hookspec(firstresult=True)
def openseg_run_task(task, model, inputs, data_samples, options):
    """Run one of the plugin's inference tasks on a preprocessed batch (``tools/demo.py``).

    Args:
        task: a name from :func:`openseg_inference_tasks`.
        model: the built model (eval mode, weights loaded).
        inputs: ``(B, 3, H, W)`` after the model's data preprocessor.
        data_samples: the matching ``DetDataSample`` s (``ori_shape``, ``img_shape``...).
        options: the demo's options: ``text`` (str or None), ``beam_size``, ``topk``.

    Returns:
        ``None`` if the task or the model is not this plugin's; else a dict with ``results``
        (per image, a JSON-serialisable dict) and optionally ``masks`` (per image, an
        ``(H, W)`` bool array at the original size, or ``None``) to draw. Raise ``ValueError``
        with a one-line reason for unusable options (e.g. a missing ``text``).
    """


@hookspec
def openseg_benchmarks():
    """Return ``{name: callable}`` of the plugin's benchmarks.

    ``tools/benchmark.py CONFIG --suite NAME [suite options]`` runs one: the callable is
    ``fn(cfg, args, argv) -> None`` with ``cfg`` the loaded config (``--cfg-options`` applied),
    ``args`` the tool's common options (``size``, ``iters``, ``warmup``, ``device``) and
    ``argv`` the options the tool did not recognise, which the benchmark parses itself (with
    ``argparse``; an unknown option must be an error, not ignored). It prints its report:
    medians of timings taken in turns with whatever it compares against, in the same process,
    and peak memory. Name benchmarks ``'<plugin>.<what>'`` (e.g. ``'ape.prompt_sweep'``).
    """

"""The PixelLLM plugin's hook implementations (entry point ``openseg.plugins: pixelllm``)."""
from pathlib import Path

from openseg_core.plugins import hookimpl


@hookimpl
def openseg_plugin_info():
    from . import __version__
    return dict(name='pixelllm', version=__version__,
                requires=['transformers>=4.40', 'peft>=0.10', 'tokenizers'],
                description='PixelLLM: traced captioning, referring localization and '
                            'segmentation, location-conditioned and dense captioning')


@hookimpl
def openseg_register_modules():
    from . import datasets, models  # noqa: F401


@hookimpl
def openseg_config_dirs():
    return [Path(__file__).resolve().parent / 'configs']


@hookimpl
def openseg_inference_tasks():
    from .inference import TASKS
    return dict(TASKS)


@hookimpl
def openseg_run_task(task, model, inputs, data_samples, options):
    from .inference import run_task
    return run_task(task, model, inputs, data_samples, options)


@hookimpl
def openseg_benchmarks():
    from .benchmark import trace_overhead
    return {'pixelllm.trace_overhead': trace_overhead}

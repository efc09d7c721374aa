"""The APE plugin's hook implementations (entry point ``openseg.plugins: ape``)."""
from pathlib import Path

from openseg_core.plugins import hookimpl


@hookimpl
def openseg_plugin_info():
    from . import __version__
    return dict(name='ape', version=__version__, requires=['timm>=0.9'],
                description='APE: detect, segment and ground thousands of prompts in one pass')


@hookimpl
def openseg_register_modules():
    from . import datasets, models  # noqa: F401


@hookimpl
def openseg_config_dirs():
    return [Path(__file__).resolve().parent / 'configs']


@hookimpl
def openseg_inference_tasks():
    return dict(prompts='boxes and masks for a comma-separated mix of words and sentences '
                        '(--text "circle,the red square on the left")')


@hookimpl
def openseg_run_task(task, model, inputs, data_samples, options):
    from .inference import run_task
    return run_task(task, model, inputs, data_samples, options)


@hookimpl
def openseg_checkpoint_converters():
    from .converters.official import convert_official
    return dict(ape_official=convert_official)


@hookimpl
def openseg_benchmarks():
    from .benchmarks.prompt_sweep import prompt_sweep
    return {'ape.prompt_sweep': prompt_sweep}

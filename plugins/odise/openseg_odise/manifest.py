"""The ODISE plugin's hook implementations (entry point ``openseg.plugins: odise``)."""
from pathlib import Path

from openseg_core.plugins import hookimpl


@hookimpl
def openseg_plugin_info():
    from . import __version__
    return dict(name='odise', version=__version__,
                requires=['diffusers>=0.30', 'transformers>=4.30'],
                description='ODISE: open-vocabulary panoptic segmentation on frozen diffusion '
                            'features, label or caption supervision, CLIP ensemble')


@hookimpl
def openseg_register_modules():
    from . import datasets, models  # noqa: F401


@hookimpl
def openseg_config_dirs():
    return [Path(__file__).resolve().parent / 'configs']


@hookimpl
def openseg_checkpoint_converters():
    from .converters.official import convert_official
    return dict(odise_official=convert_official)


@hookimpl
def openseg_benchmarks():
    from .benchmarks.memory import lean_vs_official
    return {'odise.memory': lean_vs_official}

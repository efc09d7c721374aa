"""The example plugin's manifest: its hook implementations."""
from pathlib import Path

from openseg_core.plugins import hookimpl


@hookimpl
def openseg_plugin_info():
    return dict(name='example', version='0.0.1', description='a head that scales its input')


@hookimpl
def openseg_register_modules():
    from . import heads  # noqa: F401  (registers example.ScaledHead)


@hookimpl
def openseg_config_dirs():
    return [Path(__file__).resolve().parent / 'configs']

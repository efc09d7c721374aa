"""The example plugin's manifest: its hook implementations."""
from openseg_core.plugins import hookimpl


@hookimpl
def openseg_plugin_info():
    return dict(name='example', version='0.0.1', description='a head that scales its input')


@hookimpl
def openseg_register_modules():
    from . import heads  # noqa: F401  (registers example.ScaledHead)

"""The core's own manifest: openseg's components, loaded through the plugin path."""
from pathlib import Path

from .hookspecs import hookimpl


@hookimpl
def openseg_plugin_info():
    from openseg_core import __version__
    return dict(name='openseg_core', version=__version__,
                description='core: reference mask-classification segmentor, data, metrics')


@hookimpl
def openseg_register_modules():
    import openseg_core.datasets  # noqa: F401
    import openseg_core.engine  # noqa: F401
    import openseg_core.evaluation  # noqa: F401
    import openseg_core.models  # noqa: F401


@hookimpl
def openseg_config_dirs():
    return [Path(__file__).resolve().parents[1] / 'configs']


@hookimpl
def openseg_inference_tasks():
    return dict(panoptic='things and stuff, one segment per object or region',
                semantic='one label per pixel', instance='scored masks of things')

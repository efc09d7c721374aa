"""The X-Decoder plugin's hook implementations (entry point ``openseg.plugins: xdecoder``)."""
from pathlib import Path

from openseg_core.plugins import hookimpl


@hookimpl
def openseg_plugin_info():
    from . import __version__
    return dict(name='xdecoder', version=__version__, requires=['timm>=0.9'],
                description='X-Decoder: generic + referring segmentation, retrieval, captioning')


@hookimpl
def openseg_register_modules():
    from . import models  # noqa: F401


@hookimpl
def openseg_config_dirs():
    return [Path(__file__).resolve().parent / 'configs']


@hookimpl
def openseg_inference_tasks():
    return dict(
        referring='the mask of the object a phrase describes (--text)',
        captioning='a sentence describing the image (beam search)',
        retrieval='rank images by similarity to a text (--text, several images)',
        region_retrieval='retrieve the image that matches a phrase, then ground the phrase',
        referring_captioning='ground a phrase (--text), then caption inside its mask')


@hookimpl
def openseg_run_task(task, model, inputs, data_samples, options):
    from .inference import run_task
    return run_task(task, model, inputs, data_samples, options)


@hookimpl
def openseg_checkpoint_converters():
    from .converters.official import convert_official
    return dict(xdecoder_official=convert_official)


@hookimpl
def openseg_benchmarks():
    from .benchmarks.caption_speed import caption_speed
    return {'xdecoder.caption_speed': caption_speed}

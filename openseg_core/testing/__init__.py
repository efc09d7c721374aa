"""Fixtures and helpers for the tests of openseg and of its plugins.

The pytest plugin ``openseg`` (entry point ``pytest11`` of the ``openseg`` distribution), so
any test run in an environment with openseg installed has the fixtures, wherever its files are:

``openseg_scope``  session, autouse: load the plugins and build under the core's scope, as a
                   user's script does first.
``shapes_root``    session: a small generated ``shapes`` dataset, read-only.
``single_thread``  module: torch on one thread (small tensors).
``full_run``       session: a 4-iteration training run of :data:`TINY_CONFIG`.

Tests import the helpers: ``from openseg_core.testing import run_tool, tiny_run_options``.
Nothing here assumes the tests' location or working directory: configs are named by plugin
scope, and the tools are found next to the installed ``openseg_core`` package.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TINY_CONFIG = 'openseg_core::reference/ovseg_tiny_shapes.py'
#: ``tools/`` ships with the source tree beside the package (an editable install), not in a
#: wheel.
TOOLS = Path(__file__).resolve().parents[2] / 'tools'
# RandomFlip draws from numpy in the loader; runs compared for equality go without it.
NO_FLIP = ['train_dataloader.dataset.pipeline.2.prob=0.0']

# The fixtures stay out: pytest has them from the plugin, a conftest importing them would
# define them twice.
__all__ = ['TINY_CONFIG', 'TOOLS', 'NO_FLIP', 'config_names', 'run_tool', 'tiny_run_options']


def config_names(plugin: str) -> list:
    """``'<plugin>::<path>'`` of each config the plugin ships, bases (``_base_/``) left out."""
    from openseg_core.plugins import CONFIG_SCOPE_SEP, get_plugin_manager
    return sorted(f'{plugin}{CONFIG_SCOPE_SEP}{path.relative_to(directory).as_posix()}'
                  for directory in get_plugin_manager().config_dirs(plugin)
                  for path in directory.rglob('*.py') if '_base_' not in path.parts)


def run_tool(args, cwd=None, **env) -> subprocess.CompletedProcess:
    """Run ``python tools/<args[0]> <args[1:]>`` in a fresh interpreter, as a user would.

    ``cwd`` defaults to a new empty directory, removed afterwards, so that no test depends on
    running from the checkout; a test that inspects what a tool wrote there passes its own.
    """
    tool = TOOLS / str(args[0])
    if not tool.is_file():
        pytest.skip(f'{tool} not found: the tools ship with the openseg source tree')
    full_env = dict(os.environ, **env)
    full_env.pop('OPENSEG_DEBUG', None)
    with tempfile.TemporaryDirectory() as empty:
        return subprocess.run([sys.executable, str(tool)] + [str(a) for a in args[1:]],
                              cwd=cwd or empty, env=full_env, capture_output=True, text=True,
                              timeout=600)


def tiny_run_options(shapes_root, iters=4, split='val'):
    """--cfg-options that point the tiny config at a test dataset and shrink the run."""
    root = f'{shapes_root}/'
    loader = ['train_dataloader', 'val_dataloader', 'test_dataloader']
    opts = [f'{d}.dataset.data_root={root}' for d in loader]
    opts += [f'{d}.num_workers=0' for d in loader] + [f'{d}.persistent_workers=False'
                                                      for d in loader]
    opts += [f'{d}.batch_size=2' for d in loader]
    for evaluator in ('val_evaluator', 'test_evaluator'):
        opts += [f'{evaluator}.0.ann_file={root}annotations/panoptic_{split}.json',
                 f'{evaluator}.0.seg_prefix={root}annotations/panoptic_{split}/',
                 f'{evaluator}.2.ann_file={root}annotations/instances_{split}.json']
    opts += [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
             'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=5',
             'default_hooks.logger.interval=1', 'param_scheduler.0.end=2',
             'param_scheduler.1.begin=2', f'param_scheduler.1.end={iters}']
    return opts


@pytest.fixture(scope='session', autouse=True)
def openseg_scope():
    """What a user's script does first: load plugins, build under the core's scope."""
    from mmengine.registry import init_default_scope

    from openseg_core.plugins import load_plugins
    from openseg_core.registry import SCOPE
    load_plugins()
    init_default_scope(SCOPE)


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for a module of small-tensor tests: faster, and much faster on busy
    shared CPUs (``pytestmark = pytest.mark.usefixtures('single_thread')``)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """A small generated shapes dataset shared by the whole session (read-only)."""
    from openseg_core.datasets.shapes import ShapesSpec, generate_shapes
    root = tmp_path_factory.mktemp('data') / 'shapes'
    generate_shapes(str(root), ShapesSpec(image_size=64, seed=0,
                                          splits=dict(train=16, val=6, val_open=6)))
    return root


@pytest.fixture(scope='session')
def full_run(shapes_root, tmp_path_factory):
    """A 4-iteration training run of the tiny config: (work dir, completed process)."""
    work = tmp_path_factory.mktemp('full')
    result = run_tool(['train.py', TINY_CONFIG, '--work-dir', work, '--cfg-options',
                       *tiny_run_options(shapes_root), *NO_FLIP])
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result

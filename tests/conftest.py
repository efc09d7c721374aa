import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / 'configs' / 'reference' / 'ovseg_tiny_shapes.py'


@pytest.fixture(scope='session', autouse=True)
def openseg_scope():
    """What a user's script does first: load plugins, build under the core's scope."""
    from mmengine.registry import init_default_scope

    from openseg_core.plugins import load_plugins
    from openseg_core.registry import SCOPE
    load_plugins()
    init_default_scope(SCOPE)


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """A small generated shapes dataset shared by the whole session (read-only)."""
    from openseg_core.datasets.shapes import ShapesSpec, generate_shapes
    root = tmp_path_factory.mktemp('data') / 'shapes'
    generate_shapes(str(root), ShapesSpec(image_size=64, seed=0,
                                          splits=dict(train=16, val=6, val_open=6)))
    return root


def run_tool(args, cwd=REPO, **env):
    """Run a tool in a fresh interpreter, as a user would."""
    import subprocess
    full_env = dict(os.environ, **env)
    full_env.pop('OPENSEG_DEBUG', None)
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


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


# RandomFlip draws from numpy in the loader; runs compared for equality go without it.
NO_FLIP = ['train_dataloader.dataset.pipeline.2.prob=0.0']


@pytest.fixture(scope='session')
def full_run(shapes_root, tmp_path_factory):
    """A 4-iteration training run of the tiny config: (work dir, completed process)."""
    work = tmp_path_factory.mktemp('full')
    result = run_tool(['tools/train.py', TINY_CONFIG, '--work-dir', work, '--cfg-options',
                       *tiny_run_options(shapes_root), *NO_FLIP])
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result

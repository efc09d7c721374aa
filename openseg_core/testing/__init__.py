"""Fixtures and helpers for the tests of openseg and of its plugins.

The pytest plugin ``openseg`` (entry point ``pytest11`` of the ``openseg`` distribution), so
any test run in an environment with openseg installed has the fixtures, wherever its files are:

``openseg_scope``  session, autouse: load the plugins and build under the core's scope, as a
                   user's script does first.
``shapes_root``    session: a small generated ``shapes`` dataset, read-only.
``single_thread``  module: torch on one thread (small tensors).
``shapes_clip_stand_in``  session, autouse: an openseg cache in a temporary directory holding
                   seeded random weights where the small shapes CLIP belongs, and building it
                   forbidden: configs naming ``openseg://shapes_clip`` load through the real
                   path in seconds instead of training it for minutes.
``full_run``       session: a 4-iteration training run of :data:`TINY_CONFIG`.

Tests import the helpers: ``from openseg_core.testing import run_tool, tiny_run_options``.
Nothing here assumes the tests' location or working directory: configs are named by plugin
scope, and the tools are found next to the installed ``openseg_core`` package.
"""
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
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
__all__ = ['TINY_CONFIG', 'TOOLS', 'NO_FLIP', 'assert_one_line_error', 'config_names', 'run_tool',
           'run_tool_in_process', 'snapshot', 'tiny_run_options']


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


def assert_one_line_error(result, prog: str, *fragments: str, code: int = 2) -> str:
    """A tool's failure as users should see it: exit ``code``, exactly one ``<prog>: error:``
    line on stderr holding every fragment, no traceback, no terminal colour codes, and never
    the advice to turn off ``weights_only``. Returns the line."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith(f'{prog}: error:')]
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert '\x1b[' not in output, output[-2000:]
    assert not re.search(r'weights_only\s*=\s*False', output), output[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(path) -> object:
    """What is under ``path`` (relative names and sizes), or ``None`` if it does not exist: equal
    before and after a failed run when the run left nothing behind."""
    path = Path(path)
    if not path.exists():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size if p.is_file() else -1)
                  for p in path.rglob('*'))


def run_tool_in_process(args, cwd=None) -> subprocess.CompletedProcess:
    """:func:`run_tool` in this interpreter: ``tools/<args[0]>``'s ``main(argv)`` under the
    tools' error handling, with its exit code, stdout and stderr.

    Seconds faster per call than a fresh interpreter (no imports, no plugin loading), for the
    many runs that fail before any work; a test of what only a real process shows (the exit
    status through the shell, terminal detection) uses :func:`run_tool`.
    """
    from openseg_core.engine.cli import run_tool as run_main
    tool = TOOLS / str(args[0])
    if not tool.is_file():
        pytest.skip(f'{tool} not found: the tools ship with the openseg source tree')
    spec = importlib.util.spec_from_file_location(f'openseg_tools_{tool.stem}', tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err, code = io.StringIO(), io.StringIO(), 0
    previous = os.getcwd()
    before = _global_instances()
    debug = os.environ.pop('OPENSEG_DEBUG', None)
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(cwd or empty)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                run_main(lambda: module.main([str(a) for a in args[1:]]), tool.name)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(previous)
            if debug is not None:
                os.environ['OPENSEG_DEBUG'] = debug
            _drop_global_instances(before)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def _manager_classes() -> list:
    from mmengine.utils import ManagerMixin
    found, stack = [], [ManagerMixin]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                stack.append(sub)
    return found


def _global_instances() -> dict:
    return {cls: set(cls._instance_dict) for cls in _manager_classes()}


def _drop_global_instances(before: dict) -> None:
    """Forget the loggers, visualizers and message hubs a tool run created in this process.

    mmengine keeps them by name for the process's lifetime, and the configs name their
    visualizer ``'visualizer'``: a second runner would reuse the first one, which writes into
    the first run's (removed) work dir. A real process starts without them.
    """
    import logging
    for cls in _manager_classes():
        for name in set(cls._instance_dict) - before.get(cls, set()):
            instance = cls._instance_dict.pop(name, None)
            if isinstance(instance, logging.Logger):
                for handler in list(instance.handlers):
                    handler.close()
                    instance.removeHandler(handler)


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


def pytest_configure(config):
    """Under pytest-xdist, share the CPUs between the workers (and the tools they start).

    Two workers on two cores, each with two intra-op threads, spend a third of the suite's CPU
    time in OpenMP's spinning (24 against 17 CPU minutes on a 2-core Zen 3); an
    ``OMP_NUM_THREADS`` set by the user wins.
    """
    workers = os.environ.get('PYTEST_XDIST_WORKER_COUNT')
    if workers is None or 'OMP_NUM_THREADS' in os.environ:
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    threads = max(1, (cpus or 1) // int(workers))
    os.environ['OMP_NUM_THREADS'] = str(threads)
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(threads)


@pytest.fixture(scope='session', autouse=True)
def openseg_scope():
    """What a user's script does first: load plugins, build under the core's scope."""
    from mmengine.registry import init_default_scope

    from openseg_core.plugins import load_plugins
    from openseg_core.registry import SCOPE
    load_plugins()
    init_default_scope(SCOPE)


@pytest.fixture(scope='session', autouse=True)
def shapes_clip_stand_in(tmp_path_factory):
    """``$OPENSEG_HOME`` in a temporary directory with random ``ShapesCLIP-RN`` weights as the
    shapes CLIP (subprocesses inherit it); yields the file. The real build is tested on its
    own, with a home of its own."""
    import open_clip
    import torch

    from openseg_core.models.clip.pretrained import BUILD_ENV, HOME_ENV, MODEL_NAME
    from openseg_core.models.clip.pretrained import shapes_clip_file
    saved = {name: os.environ.get(name) for name in (HOME_ENV, BUILD_ENV)}
    os.environ[HOME_ENV] = str(tmp_path_factory.mktemp('openseg_home'))
    os.environ[BUILD_ENV] = '0'
    path = shapes_clip_file()
    os.makedirs(os.path.dirname(path))
    torch.manual_seed(0)
    torch.save(open_clip.create_model(MODEL_NAME).state_dict(), path)
    yield path
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope='module')
def single_thread():
    """One intra-op thread for a module of small-tensor tests: faster, and much faster on busy
    shared CPUs (``pytestmark = pytest.mark.usefixtures('single_thread')``)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _made_once(tmp_path_factory, name: str):
    """A directory the whole session shares, and whether this process must fill it.

    Under pytest-xdist the workers share one directory per ``name`` (the first to arrive
    fills it while the others wait), so a session fixture's work is not repeated per worker.
    """
    if 'PYTEST_XDIST_WORKER' not in os.environ:
        yield tmp_path_factory.mktemp(name), True
        return
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f'{shared}.lock'):
        done = shared / '.complete'
        if done.exists():
            yield shared, False
            return
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir()
        yield shared, True
        done.touch()


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """A small generated shapes dataset shared by the whole session (read-only)."""
    from openseg_core.datasets.shapes import ShapesSpec, generate_shapes
    with _made_once(tmp_path_factory, 'data') as (data, fill):
        if fill:
            generate_shapes(str(data / 'shapes'), ShapesSpec(
                image_size=64, seed=0, splits=dict(train=16, val=6, val_open=6)))
    return data / 'shapes'


@pytest.fixture(scope='session')
def full_run(shapes_root, tmp_path_factory):
    """A 4-iteration training run of the tiny config: (work dir, completed process)."""
    with _made_once(tmp_path_factory, 'full') as (work, fill):
        record = work.parent / f'{work.name}.json'
        if fill:
            result = run_tool(['train.py', TINY_CONFIG, '--work-dir', work, '--cfg-options',
                               *tiny_run_options(shapes_root), *NO_FLIP])
            assert result.returncode == 0, result.stderr[-3000:]
            record.write_text(json.dumps(dict(args=result.args, returncode=result.returncode,
                                              stdout=result.stdout, stderr=result.stderr)))
    return work, subprocess.CompletedProcess(**json.loads(record.read_text()))

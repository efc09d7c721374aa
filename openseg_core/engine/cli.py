"""What tools/train.py, tools/test.py and tools/demo.py share: config loading with checks,
and failing in one line without leaving half-written output."""
import argparse
import contextlib
import os
import re
import shutil
import sys
from typing import Optional, Union

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from openseg_core.plugins import CONFIG_SCOPE_SEP, load_plugins
from openseg_core.registry import SCOPE
from openseg_core.utils.memory import keep_freed_memory

from .config_check import check_config
from .safe_checkpoint import allow_openseg_checkpoint_types

DEBUG_ENV = 'OPENSEG_DEBUG'


class UserError(Exception):
    """Bad input spotted by a tool itself."""


#: Terminal colour and cursor sequences, which have no place in a file or a pipe.
ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


class ConfigOptionsAction(DictAction):
    """mmengine's ``DictAction`` with a usage error for a pair without ``=``."""

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            if '=' not in value:
                parser.error(f'{option_string} takes KEY=VALUE pairs (e.g. '
                             f'model.query_decoder.num_queries=50), got {value!r}')
        super().__call__(parser, namespace, values, option_string)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and outputs')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='override config entries, e.g. model.query_decoder.num_queries=50')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (tools/dist_train.sh uses pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--partial-load', action='store_true',
                        help='load the weights of a checkpoint that fit the model and skip the '
                        'rest (default: a checkpoint that does not fit is an error)')


def load_config(path: Union[str, os.PathLike], cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Load plugins, read a config (a file, or ``'<plugin>::<path>'`` among the plugin's
    configs), apply overrides, and check every type it names."""
    manager = load_plugins()
    path = str(path)
    if CONFIG_SCOPE_SEP in path:
        path = manager.resolve_config(path)
    elif not os.path.isfile(path):
        raise UserError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as exc:
        where = f', line {exc.lineno}' if exc.lineno else ''
        raise UserError(f'config {path} has a syntax error ({exc.msg}{where}); fix '
                        'it') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', os.path.splitext(os.path.basename(path))[0])
    check_config(cfg, manager)
    init_default_scope(cfg.get('default_scope', SCOPE))
    allow_openseg_checkpoint_types()
    return cfg


def configure_allocator(cfg: Config) -> None:
    """Keep freed CPU memory for reuse (:func:`~openseg_core.utils.memory.keep_freed_memory`)
    unless the config sets ``env_cfg.keep_freed_memory=False``."""
    if cfg.get('env_cfg', {}).get('keep_freed_memory', True):
        keep_freed_memory()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # DataLoader workers wrap the original error in a traceback; its last line says it.
    line = lines[-1] if 'Original Traceback' in text else lines[0]
    return line if isinstance(exc, (UserError, ValueError, KeyError, FileNotFoundError,
                                    AssertionError)) else f'{type(exc).__name__}: {line}'


@contextlib.contextmanager
def cleanup_on_error(work_dir: Optional[str]):
    """Remove what this run added to ``work_dir`` if it fails before writing a checkpoint."""
    before = set(os.listdir(work_dir)) if work_dir and os.path.isdir(work_dir) else None
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        if work_dir and os.path.isdir(work_dir):
            added = set(os.listdir(work_dir)) - (before or set())
            if not any(name.endswith('.pth') for name in added):
                if before is None:
                    shutil.rmtree(work_dir, ignore_errors=True)
                else:
                    for name in added:
                        path = os.path.join(work_dir, name)
                        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) \
                            else os.remove(path)
        raise


def run_tool(main, prog: str) -> None:
    """Run ``main()``; turn any error into ``<prog>: error: <one line>`` and exit 2.

    Set ``OPENSEG_DEBUG=1`` to see the traceback instead.
    """
    if not sys.stdout.isatty() or not sys.stderr.isatty():
        # termcolor (mmengine's log levels) and rich (mmengine's tables) leave colours out.
        os.environ.setdefault('NO_COLOR', '1')
    try:
        main()
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: B902 - the top of a command-line tool
        if os.environ.get(DEBUG_ENV):
            raise
        print(f'{prog}: error: {ANSI_ESCAPE.sub("", _one_line(exc))}', file=sys.stderr)
        sys.exit(2)

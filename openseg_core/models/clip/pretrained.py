"""The small CLIP trained on ``shapes``, built once into the openseg cache.

``shapes_clip_path()`` returns ``$OPENSEG_HOME/pretrained/shapes_clip-<key>.pt`` (an open_clip
state dict of ``ShapesCLIP-RN``), building it first if it is missing: generate the
image-caption split, train ``openseg_core::clip/shapes_clip_rn.py`` with mmengine's runner,
save the weights, rename into place. ``<key>`` hashes everything the weights depend on (the
generator's source, the architecture, the training config, the build's sizes), so a change
to any of them builds a new file instead of reusing a stale one; nothing falls back to random
weights. Configs name the file ``'openseg://shapes_clip'`` (see
:func:`openseg_core.utils.checkpoint.load_state_dict_file`).

Run as ``python -m openseg_core.models.clip.pretrained OUT WORK_DIR`` it does one build (what
:func:`build_shapes_clip` runs in a fresh interpreter, so that its runner, loggers and
threads never mix with the caller's).
"""
import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence

HOME_ENV = 'OPENSEG_HOME'
#: ``0`` forbids building on demand: a missing file is then an error (tests, offline jobs).
BUILD_ENV = 'OPENSEG_BUILD_PRETRAINED'
CONFIG = 'openseg_core::clip/shapes_clip_rn.py'
MODEL_NAME = 'ShapesCLIP-RN'
#: What the build generates: the caption split, and the splits the zero-shot test crops.
BUILD = dict(pretrain=5000, val=100, val_open=100, seed=0, image_size=128)


def openseg_home() -> str:
    return os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser('~'), '.cache',
                                                    'openseg')


def _sources():
    import openseg_core
    from openseg_core.datasets.shapes import generator

    from . import MODEL_CONFIG_DIR
    configs = os.path.join(os.path.dirname(openseg_core.__file__), 'configs')
    return [generator.__file__, os.path.join(MODEL_CONFIG_DIR, f'{MODEL_NAME}.json'),
            os.path.join(configs, CONFIG.split('::')[1])]


def shapes_clip_key() -> str:
    """12 hex digits of SHA-256 over the generator's source, the architecture json, the
    training config and :data:`BUILD`."""
    digest = hashlib.sha256(json.dumps(BUILD, sort_keys=True).encode())
    for path in _sources():
        with open(path, 'rb') as f:
            digest.update(os.path.basename(path).encode() + b'\0' + f.read())
    return digest.hexdigest()[:12]


def shapes_clip_file() -> str:
    """Where the shapes CLIP of the current sources is cached (it may not exist)."""
    return os.path.join(openseg_home(), 'pretrained', f'shapes_clip-{shapes_clip_key()}.pt')


def shapes_clip_path(build: bool = True) -> str:
    """Path of the cached shapes CLIP, built first if missing (about 5 minutes on 2 CPU
    cores) unless ``build`` is false or ``OPENSEG_BUILD_PRETRAINED=0``.

    Raises:
        FileNotFoundError: the file is missing and may not be built.
        RuntimeError: the build failed (its log was shown; nothing is left behind).
    """
    path = shapes_clip_file()
    if os.path.isfile(path):
        return path
    if not build or os.environ.get(BUILD_ENV, '1') == '0':
        raise FileNotFoundError(f'the shapes CLIP is not built: {path} is missing; run '
                                '`openseg pretrain-clip` once (about 5 minutes)')
    return build_shapes_clip(path)


@contextlib.contextmanager
def _locked(directory: str):
    """One build at a time per cache (concurrent jobs wait, then reuse the file)."""
    with open(os.path.join(directory, '.shapes_clip.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_shapes_clip(path: str, force: bool = False, build_args: Sequence[str] = ()) -> str:
    """Build the shapes CLIP into ``path`` (atomically: a failure leaves nothing there).

    Other ``shapes_clip-*`` files of the cache (stale keys) are removed once it is in place.
    ``build_args`` go to :func:`main` (tests shrink the build with them).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with _locked(directory):
        if os.path.isfile(path) and not force:
            return path  # another process built it while this one waited
        # Left by a build that was killed (the lock says none is running now).
        for stale in glob.glob(os.path.join(directory, '.build-shapes_clip-*')):
            shutil.rmtree(stale, ignore_errors=True)
        work = tempfile.mkdtemp(prefix='.build-shapes_clip-', dir=directory)
        try:
            print(f'== building the shapes CLIP into {path} (once; about 5 minutes)',
                  file=sys.stderr, flush=True)
            start = time.time()
            tmp_file = os.path.join(work, 'shapes_clip.pt')
            result = subprocess.run([sys.executable, '-m', 'openseg_core.models.clip.pretrained',
                                     tmp_file, work, *build_args])
            if result.returncode != 0 or not os.path.isfile(tmp_file):
                raise RuntimeError(f'building the shapes CLIP failed (exit '
                                   f'{result.returncode}); see its log above')
            stem = os.path.splitext(path)[0]
            for suffix in ('.json', '.log'):
                if os.path.isfile(os.path.join(work, 'shapes_clip' + suffix)):
                    os.replace(os.path.join(work, 'shapes_clip' + suffix), stem + suffix)
            os.replace(tmp_file, path)
            for old in glob.glob(os.path.join(directory, 'shapes_clip-*')):
                if not old.startswith(stem + '.'):
                    os.remove(old)
            print(f'== shapes CLIP built in {time.time() - start:.0f} s: {path}',
                  file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return path


def _build(out: str, work: str, build: dict, cfg_options: dict) -> None:
    """Generate the data, train, save ``out`` (+ ``.json`` with the zero-shot figures and
    ``.log``, the training log)."""
    import torch
    from mmengine.runner import Runner

    from openseg_core.datasets.shapes import ShapesSpec, generate_shapes
    from openseg_core.engine.cli import load_config

    # One intra-op thread: on 2 cores shared with other jobs, two threads wait on each other
    # at every op (measured beside two other jobs: 4.4 s per iteration with two threads, 0.2 s
    # with one). At low load one thread ran at 0.17-0.19 s and two at about 0.14 s: one costs
    # a quarter there, leaves the other core to the data worker and never the 20x above.
    torch.set_num_threads(1)
    start = time.time()
    data = os.path.join(work, 'shapes')

    def progress(split, done, total):
        if done == total or done % 1000 == 0:
            print(f'  {split}: {done}/{total} images', file=sys.stderr, flush=True)

    generate_shapes(data, ShapesSpec(
        image_size=build['image_size'], seed=build['seed'],
        splits=dict(pretrain=build['pretrain'], val=build['val'], val_open=build['val_open'])),
        progress=progress)
    generated = time.time() - start
    root = data + '/'
    cfg = load_config(CONFIG, dict({
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.datasets.0.data_root': root,
        'val_dataloader.dataset.datasets.1.data_root': root,
        'default_hooks.checkpoint.interval': 10 ** 9,  # only the final weights are kept
    }, **cfg_options), os.path.join(work, 'train'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    state = {k: v.detach().cpu().clone() for k, v in model.clip.state_dict().items()}
    torch.save(state, out)
    scores = {k.split('/', 1)[1]: round(float(v.current()), 2)
              for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/zero_')}
    record = dict(model_name=MODEL_NAME, key=shapes_clip_key(), config=CONFIG, build=build,
                  zero_shot=scores, seconds=dict(generate=round(generated),
                                                 total=round(time.time() - start)),
                  torch_threads=torch.get_num_threads())
    with open(os.path.splitext(out)[0] + '.json', 'w') as f:
        json.dump(record, f, indent=1)
    logs = glob.glob(os.path.join(work, 'train', '*', '*.log'))
    if logs:
        shutil.copy(logs[0], os.path.splitext(out)[0] + '.log')


def main(argv=None) -> None:
    from mmengine.config import DictAction

    from openseg_core.engine.cli import run_tool
    parser = argparse.ArgumentParser(prog='python -m openseg_core.models.clip.pretrained',
                                     description='build the shapes CLIP once')
    parser.add_argument('out', help='where to save the open_clip state dict')
    parser.add_argument('work', help='an empty directory for the data and the run')
    for name in ('pretrain', 'val', 'val_open', 'image_size'):
        parser.add_argument('--' + name.replace('_', '-'), type=int, default=BUILD[name])
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides of the training config (tests shrink the run)')
    args = parser.parse_args(argv)
    sizes = {k: getattr(args, k) for k in ('pretrain', 'val', 'val_open', 'image_size')}
    run_tool(lambda: _build(args.out, args.work, dict(BUILD, **sizes), args.cfg_options),
             'openseg pretrain-clip')


if __name__ == '__main__':
    main()

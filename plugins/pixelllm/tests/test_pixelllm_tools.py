"""PixelLLM through the command-line tools: a tiny training (a real process) and, in this
interpreter (imports cost seconds per process on a loaded machine), its test, the demo's
traced captioning (JSON of words with points and a drawing) and the trace-overhead
benchmark."""
import argparse
import json
import re

import pytest

from openseg_core.engine.cli import load_config
from openseg_core.testing import run_tool, run_tool_in_process

CONFIG = 'pixelllm::pixelllm_tiny_shapes_trace.py'
# Small tensors: one thread each (a busy 2-core machine makes thread pools spin).
pytestmark = pytest.mark.usefixtures('single_thread')


def _options(root, iters=2):
    opts = [f'train_dataloader.dataset.datasets.0.data_root={root}/',
            f'train_dataloader.dataset.datasets.1.data_root={root}/',
            f'val_dataloader.dataset.data_root={root}/',
            f'test_dataloader.dataset.data_root={root}/']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    opts += ['train_dataloader.batch_size=3', 'train_dataloader.sampler.batch_size=3',
             'train_dataloader.sampler.source_ratio=[2,1]', 'val_dataloader.batch_size=3',
             'test_dataloader.batch_size=3', 'model.max_caption_len=6',
             f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
             'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
             'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
             f'param_scheduler.1.end={iters}']
    return opts


@pytest.fixture(scope='module')
def trained(shapes_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('pixelllm_train')
    result = run_tool(['train.py', CONFIG, '--work-dir', work, '--cfg-options',
                       *_options(shapes_root)], OMP_NUM_THREADS='1')
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result


def test_train_evaluates_captions_and_traces(trained):
    work, result = trained
    log = result.stdout + result.stderr
    for key in ('loss_caption', 'loss_point', 'caption/CIDEr', 'trace/point_in_mask',
                'trace/mention_recall', 'trace/L1'):
        assert key in log, key
    assert (work / 'iter_2.pth').is_file()


def test_test_tool_and_demo_on_the_trained_checkpoint(trained, shapes_root, tmp_path):
    work, _ = trained
    ckpt = work / 'iter_2.pth'
    result = run_tool_in_process(['test.py', CONFIG, ckpt, '--work-dir', tmp_path / 'test',
                                  '--cfg-options', *_options(shapes_root)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'trace/point_in_mask: [\d.]+|trace/point_in_mask: nan',
                     result.stdout + result.stderr)

    image = sorted((shapes_root / 'images' / 'val').iterdir())[0]
    out = tmp_path / 'demo'
    result = run_tool_in_process(['demo.py', image, CONFIG, ckpt, '--task',
                                  'traced_captioning', '--out-dir', out])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / 'traced_captioning.json').read_text())
    entry = report['images'][0]
    assert isinstance(entry['caption'], str)
    assert all(set(w) == {'word', 'point'} and len(w['point']) == 2 for w in entry['words'])
    assert (out / f'{image.stem}_traced_captioning.png').is_file()

    result = run_tool_in_process(['demo.py', image, CONFIG, ckpt, '--task',
                                  'referring_localization', '--out-dir', tmp_path / 'none'])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "demo.py: error: task 'referring_localization' needs a phrase: pass --text \"...\"")
    assert not (tmp_path / 'none').exists()


def test_benchmark_compares_traced_plain_and_uncached_decoding(capsys):
    # tools/benchmark.py CONFIG --suite pixelllm.trace_overhead calls this hook's function
    # with the loaded config, its common options and the rest of the command line.
    from openseg_core.plugins import get_plugin_manager
    suite = get_plugin_manager().benchmarks()['pixelllm.trace_overhead']
    common = argparse.Namespace(size=64, iters=2, warmup=1, device='cpu')
    suite(load_config(CONFIG), common, ['--batch', '2', '--tokens', '4'])
    out = capsys.readouterr().out
    for way in ('traced', 'caption only', 'traced, no KV cache', 'official'):
        assert re.search(rf'^  {re.escape(way)} +[\d.]+ tokens/s', out, re.MULTILINE), out
    assert re.search(r'trace overhead .*: [+-][\d.]+%', out)
    with pytest.raises(SystemExit):
        suite(load_config(CONFIG), common, ['--tokens', '0'])
    assert '--tokens must be at least 1' in capsys.readouterr().err

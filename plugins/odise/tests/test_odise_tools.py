"""ODISE through the command-line tools, run in this interpreter (the tools' ``main`` under
their error handling, exit codes and output, without importing every package again per run):
a few training iterations of each supervision, the test tool on ``val_open``, the demo, the
paper config's missing files, the memory benchmark suite (called as tools/benchmark.py calls
it)."""
import argparse
import re
from pathlib import Path

import pytest
import torch

from openseg_core.testing import assert_one_line_error, tiny_run_options
from openseg_core.testing import run_tool_in_process as run_tool
from openseg_core.engine.cli import load_config
from openseg_core.models.base import SOURCE_KEY
from openseg_core.utils.checkpoint import read_checkpoint
from openseg_odise.benchmarks.memory import lean_vs_official


@pytest.fixture(scope='module')
def trained(shapes_root, tmp_path_factory):
    """Three training iterations of each tiny config through tools/train.py."""
    out = {}
    for supervision in ('label', 'caption'):
        work = tmp_path_factory.mktemp(supervision)
        result = run_tool(['train.py', f'odise::odise_tiny_shapes_{supervision}.py',
                           '--work-dir', work, '--cfg-options',
                           *tiny_run_options(shapes_root, iters=3)])
        assert result.returncode == 0, result.stderr[-3000:]
        checkpoint = Path((work / 'last_checkpoint').read_text().strip())
        out[supervision] = (work, result.stdout + result.stderr, checkpoint)
    return out


def test_both_supervisions_train_and_validate(trained):
    label_log, caption_log = trained['label'][1], trained['caption'][1]
    assert 'loss_cls' in label_log and 'loss_grounding' not in label_log
    assert 'loss_grounding' in caption_log and 'd3.loss_grounding' in caption_log
    for log in (label_log, caption_log):
        assert re.search(r'coco_panoptic/PQ: [\d.]+', log), log[-2000:]


def test_checkpoints_hold_no_frozen_weights(trained):
    state = read_checkpoint(trained['label'][2])['state_dict']
    # The UNet and VAE are random here (no file): they are saved; the CLIP towers come from
    # the (stand-in) shapes CLIP file and are only referenced by digest.
    frozen_from_file = ('text_encoder.tower.', 'backbone.captioner.image_encoder.')
    assert not any(k.startswith(frozen_from_file) and not k.endswith(SOURCE_KEY) for k in state)
    assert f'text_encoder.tower.{SOURCE_KEY}' in state
    assert 'backbone.captioner.alpha_cond' in state and 'head.null_embed' in state


def test_test_tool_on_held_out_classes_without_the_ensemble(trained, shapes_root, tmp_path):
    """The diffusion head alone (the training run validated with the CLIP ensemble)."""
    opts = tiny_run_options(shapes_root, iters=3, split='val_open') + [
        'test_dataloader.dataset.ann_file=annotations/panoptic_val_open.json',
        'test_dataloader.dataset.exclude_classes=[]',
        'test_dataloader.dataset.data_prefix.img=images/val_open/',
        'test_dataloader.dataset.data_prefix.seg=annotations/panoptic_val_open/']
    result = run_tool(['test.py', 'odise::odise_tiny_shapes_caption.py', trained['caption'][2],
                       '--work-dir', tmp_path, '--cfg-options', *opts,
                       'model.region_ensemble=None'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'PQ_held_out', result.stdout + result.stderr)


def test_demo_segments_an_image_with_held_out_names(trained, shapes_root, tmp_path):
    image = sorted((shapes_root / 'images' / 'val').iterdir())[0]
    result = run_tool(['demo.py', image, 'odise::odise_tiny_shapes_label.py',
                       trained['label'][2], '--things', 'circle,square,star',
                       '--stuff', 'sky,grass', '--out-dir', tmp_path])
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.glob('*.png'))


def test_paper_config_names_every_missing_file(tmp_path):
    torch.save(dict(state_dict={}), tmp_path / 'x.pth')
    result = run_tool(['test.py', 'odise::odise_label_coco_paper.py', tmp_path / 'x.pth'])
    line = assert_one_line_error(result, 'test.py', 'pretrained file(s) missing',
                                 'sd-v1-3.ckpt', 'open_clip_pytorch_model.bin')
    assert line.count('missing') >= 1


def test_memory_benchmark_suite_runs_on_the_tiny_config(capsys):
    """The suite as tools/benchmark.py calls it (cfg, common options, its own options)."""
    cfg = load_config('odise::odise_tiny_shapes_label.py')
    common = argparse.Namespace(iters=1, warmup=0, device='cpu', size=64)
    lean_vs_official(cfg, common, ['--sizes', '64', '--classes', '5'])
    out = capsys.readouterr().out
    assert re.search(r'64 x 64: peak memory ratio lean / official \d+\.\d\d', out), out
    assert re.search(r'official +64 px: weights +\d+ MB', out)
    with pytest.raises(SystemExit):
        lean_vs_official(cfg, common, ['--frobnicate'])
    assert 'unrecognized arguments: --frobnicate' in capsys.readouterr().err

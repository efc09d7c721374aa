"""X-Decoder through the command-line tools: test.py per task (from any directory), demo.py
tasks, the converter."""
import json
import re

import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.testing import run_tool, run_tool_in_process


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """Random weights of the tiny model, saved as a training run would."""
    torch.manual_seed(0)
    model = MODELS.build(load_config('xdecoder::xdecoder_tiny_shapes_generic.py').model)
    model.init_weights()
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path


def _loader_options(root):
    opts = []
    for loader in ('test_dataloader', 'val_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}/', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False', f'{loader}.batch_size=3']
    return opts


def test_test_tool_evaluates_referring_from_an_empty_directory(checkpoint, shapes_root,
                                                               tmp_path):
    # As after `pip install`: the config, its bases in the core and the tool's defaults
    # owe nothing to the working directory.
    result = run_tool(['test.py', 'xdecoder::xdecoder_tiny_shapes_referring.py', checkpoint,
                       '--cfg-options', *_loader_options(shapes_root)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'refer/cIoU' in result.stdout + result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ['work_dirs']
    assert (tmp_path / 'work_dirs' / 'xdecoder_tiny_shapes_referring').is_dir()


def test_disabled_plugin_config_fails_in_one_line(checkpoint, tmp_path):
    result = run_tool(['test.py', 'xdecoder::xdecoder_tiny_shapes_referring.py', checkpoint],
                      cwd=tmp_path, OPENSEG_DISABLE_PLUGINS='xdecoder')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "test.py: error: config 'xdecoder::xdecoder_tiny_shapes_referring.py' needs plugin "
        "'xdecoder', which is installed but disabled by OPENSEG_DISABLE_PLUGINS; enable it or "
        'remove it from that variable')
    assert not any(tmp_path.iterdir())


def test_test_tool_evaluates_captioning_and_retrieval(checkpoint, shapes_root, tmp_path):
    # The shared checkpoint is the generic config's; the captioning config adds the retrieval
    # ensemble's head.backbone_proj, which only a partial load leaves as initialised.
    result = run_tool_in_process([
        'test.py', 'xdecoder::xdecoder_tiny_shapes_captioning.py', checkpoint, '--partial-load',
        '--work-dir', tmp_path, '--cfg-options', *_loader_options(shapes_root),
        'model.test_cfg.max_caption_len=4'])
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout + result.stderr
    for key in ('caption/BLEU-4', 'caption/CIDEr', 'retrieval/t2i_R@1', 'retrieval/i2t_R@10'):
        assert key in log, key


def test_demo_runs_language_tasks_on_a_batch(checkpoint, shapes_root, tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    for name in sorted((shapes_root / 'images' / 'val').iterdir())[:2]:
        (images / name.name).write_bytes(name.read_bytes())
    config = 'xdecoder::xdecoder_tiny_shapes_generic.py'
    out = tmp_path / 'out'
    result = run_tool_in_process(['demo.py', images, config, checkpoint, '--task',
                                  'referring_captioning', '--text', 'the red square',
                                  '--beam-size', '1', '--out-dir', out])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / 'referring_captioning.json').read_text())
    assert len(report['images']) == 2 and all('caption' in r for r in report['images'])
    assert len(list(out.glob('*_referring_captioning.png'))) == 2

    result = run_tool_in_process(['demo.py', images, config, checkpoint, '--task', 'referring',
                                  '--out-dir', tmp_path / 'none'])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "demo.py: error: task 'referring' needs a phrase: pass --text \"...\"")
    assert not (tmp_path / 'none').exists()

    result = run_tool_in_process(['demo.py', images, config, checkpoint, '--task', 'vqa'])
    assert result.returncode == 2 and 'unknown task' in result.stderr


def test_convert_checkpoint_tool(tmp_path):
    official = {'sem_seg_head.predictor.query_feat.weight': torch.randn(3, 8),
                'sem_seg_head.predictor.caping_embed': torch.randn(8, 8)}
    src, dst = tmp_path / 'official.pt', tmp_path / 'out' / 'openseg.pth'
    torch.save(official, src)
    result = run_tool_in_process(['convert_checkpoint.py', 'xdecoder_official', src, dst])
    assert result.returncode == 0, result.stderr
    state = torch.load(dst, weights_only=True)['state_dict']
    assert set(state) == {'query_decoder.query_feat.weight',
                          'query_decoder.global_query_feat.weight', 'head.caption_embed'}
    torch.testing.assert_close(state['query_decoder.global_query_feat.weight'],
                               official['sem_seg_head.predictor.query_feat.weight'][-1:])

    bad = tmp_path / 'notes.pt'
    bad.write_text('not a checkpoint')
    result = run_tool_in_process(['convert_checkpoint.py', 'xdecoder_official', bad,
                                  tmp_path / 'bad.pth'])
    assert result.returncode == 2 and 'is not a readable PyTorch checkpoint' in result.stderr
    assert not (tmp_path / 'bad.pth').exists()


def test_benchmark_against_mmdet_and_over_vocabulary_sizes():
    result = run_tool_in_process(['benchmark.py', 'xdecoder::xdecoder_tiny_shapes_generic.py',
                                  '--size', 64, '--iters', 2, '--warmup', 1, '--compare-mmdet',
                                  '--vocab-sweep', 10, 100])
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'latency ratio openseg / mmdet: \d+\.\d\d', result.stdout)
    for size in (10, 100):
        assert re.search(rf'^ +{size} classes: +[\d.]+ ms/image \(cached\)$', result.stdout,
                         re.MULTILINE), result.stdout


def test_benchmark_peer_gets_the_paper_configs_own_pixel_decoder():
    """mmdet's head accepts only its deformable pixel decoder at build time: the peer of the
    paper config must still run with X-Decoder's transformer-encoder FPN, not fail or fall
    back to another decoder."""
    # One prompt template: the official 81 would encode 133 x 81 prompts first.
    result = run_tool_in_process(['benchmark.py', 'xdecoder::xdecoder_focalt_paper.py',
                                  '--size', 64, '--iters', 1, '--warmup', 1, '--compare-mmdet',
                                  '--cfg-options', "model.text_encoder.templates=['{}.']"])
    assert result.returncode == 0, result.stderr[-3000:]
    # As mmdet would run it: the same module, without openseg's fast layers (unless
    # --mmdet-fast-layers), as mmdet's own parts run in the reference comparison.
    assert ("mmdet Mask2Former's pixel decoder: xdecoder.TransformerEncoderFPN (as openseg's, "
            'as built)' in result.stdout)
    flops = [float(v) for v in re.findall(r'([\d.]+) GFLOP/image', result.stdout)]
    # The same pixel decoder and backbone: the two models' FLOPs within a few percent.
    assert len(flops) == 2 and abs(flops[0] - flops[1]) < 0.05 * flops[1], result.stdout

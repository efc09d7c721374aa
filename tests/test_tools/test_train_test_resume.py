"""tools/train.py and tools/test.py end to end on a tiny run, and exact --resume."""
import json
import shutil

import pytest
import torch

from openseg_core.engine import allow_openseg_checkpoint_types
from openseg_core.testing import (NO_FLIP, TINY_CONFIG, run_tool, run_tool_in_process,
                                  tiny_run_options)


def test_training_logs_progress_and_evaluates(full_run):
    work, result = full_run
    log = result.stdout + result.stderr
    assert 'Iter(train) [4/4]' in log
    assert 'coco_panoptic/PQ' in log and 'mIoU' in log and 'coco/segm_mAP' in log
    assert (work / 'iter_4.pth').is_file()


def test_resume_reaches_the_uninterrupted_result(full_run, shapes_root, tmp_path):
    work, _ = full_run
    shutil.copy(work / 'iter_2.pth', tmp_path / 'iter_2.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    result = run_tool(['train.py', TINY_CONFIG, '--work-dir', tmp_path, '--resume',
                       '--cfg-options', *tiny_run_options(shapes_root), *NO_FLIP])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'resumed' in (result.stdout + result.stderr).lower()
    allow_openseg_checkpoint_types()
    a = torch.load(work / 'iter_4.pth', weights_only=True, map_location='cpu')['state_dict']
    b = torch.load(tmp_path / 'iter_4.pth', weights_only=True, map_location='cpu')['state_dict']
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


def test_test_tool_writes_overlays(full_run, shapes_root, tmp_path):
    work, _ = full_run
    result = run_tool(['test.py', TINY_CONFIG, work / 'iter_4.pth', '--work-dir', tmp_path,
                       '--show-dir', 'vis', '--cfg-options', *tiny_run_options(shapes_root)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'coco_panoptic/PQ' in result.stdout + result.stderr
    assert len(list(tmp_path.glob('*/vis/*.png'))) == 6


@pytest.mark.parametrize('task', ['panoptic', 'semantic', 'instance'])
def test_demo_draws_the_task_it_names(full_run, shapes_root, tmp_path, task):
    work, _ = full_run
    image = shapes_root / 'images' / 'val' / '000001.png'
    result = run_tool_in_process(['demo.py', image, TINY_CONFIG, work / 'iter_4.pth', '--task',
                                  task, '--things', 'circle,square', '--stuff',
                                  'sky,grass,sand,water', '--score-thr', '0', '--out-dir',
                                  tmp_path])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / '000001.png').stat().st_size > 0
    report = json.loads((tmp_path / '000001.json').read_text())
    # A 4-iteration model may keep no panoptic segment or instance; the semantic map always
    # has a class per pixel.
    assert report['task'] == task and (report['segments'] or task != 'semantic')
    labels = {s['label'] for s in report['segments']}
    if task == 'instance':  # things only, each with its score
        assert labels <= {'circle', 'square'} and all('score' in s for s in report['segments'])
    if task == 'semantic':  # one segment per class, no instance ids
        assert len(labels) == len(report['segments'])


def test_frozen_pretrained_text_tower_trains_resumes_and_stays_out_of_checkpoints(
        full_run, shapes_root, tmp_path):
    """The tiny config with its frozen text tower loaded from a file: checkpoints hold the
    file's digest instead of the tower, resume is exact, and another file is refused."""
    from mmengine.config import Config

    from openseg_core.plugins import resolve_config
    from openseg_core.registry import MODELS
    encoder = MODELS.build(Config.fromfile(resolve_config(TINY_CONFIG)).model.text_encoder)
    torch.save(encoder.tower.state_dict(), tmp_path / 'clip.pth')
    tower = [f'model.text_encoder.pretrained={tmp_path / "clip.pth"}']
    options = [*tiny_run_options(shapes_root), *NO_FLIP, *tower]
    work = tmp_path / 'run'
    result = run_tool_in_process(['train.py', TINY_CONFIG, '--work-dir', work, '--cfg-options',
                                  *options])
    assert result.returncode == 0, result.stderr[-3000:]
    allow_openseg_checkpoint_types()
    state = torch.load(work / 'iter_4.pth', weights_only=True, map_location='cpu')['state_dict']
    assert 'text_encoder.tower._frozen_source_sha256' in state
    assert not any(k.startswith('text_encoder.tower.') and 'frozen' not in k for k in state)
    # The tiny config itself keeps both frozen CLIP parts (text and image towers, loaded from
    # openseg://shapes_clip) out of its checkpoints the same way.
    default = torch.load(full_run[0] / 'iter_4.pth', weights_only=True,
                         map_location='cpu')['state_dict']
    for part in ('text_encoder.tower', 'backbone'):
        assert f'{part}._frozen_source_sha256' in default
        assert not any(k.startswith(part + '.') and 'frozen' not in k for k in default)

    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    shutil.copy(work / 'iter_2.pth', resumed / 'iter_2.pth')
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_2.pth'))
    result = run_tool_in_process(['train.py', TINY_CONFIG, '--work-dir', resumed, '--resume',
                                  '--cfg-options', *options])
    assert result.returncode == 0, result.stderr[-3000:]
    again = torch.load(resumed / 'iter_4.pth', weights_only=True,
                       map_location='cpu')['state_dict']
    assert again.keys() == state.keys()
    for key in state:
        assert torch.allclose(state[key].float(), again[key].float(), atol=1e-6), key

    torch.nn.init.normal_(encoder.tower.token_embedding.weight)
    torch.save(encoder.tower.state_dict(), tmp_path / 'other.pth')
    result = run_tool_in_process(['test.py', TINY_CONFIG, work / 'iter_4.pth', '--work-dir',
                                  tmp_path / 't', '--cfg-options', *tiny_run_options(shapes_root),
                                  f'model.text_encoder.pretrained={tmp_path / "other.pth"}'])
    assert result.returncode == 2
    assert 'was trained frozen on a different pretrained file' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

"""tools/train.py and tools/test.py end to end on a tiny run, and exact --resume."""
import shutil

import torch

from openseg_core.engine import allow_openseg_checkpoint_types

from openseg_core.testing import NO_FLIP, TINY_CONFIG, run_tool, tiny_run_options

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


def test_demo_writes_overlay_and_segments(full_run, shapes_root, tmp_path):
    work, _ = full_run
    image = shapes_root / 'images' / 'val' / '000001.png'
    result = run_tool(['demo.py', image, TINY_CONFIG, work / 'iter_4.pth',
                       '--things', 'circle,square', '--stuff', 'sky,grass,sand,water',
                       '--out-dir', tmp_path])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / '000001.png').stat().st_size > 0
    assert (tmp_path / '000001.json').is_file()

"""A dataset's ``metainfo`` vocabulary reaches the model and every metric through tools/test.py."""
import re

import pytest

from openseg_core.testing import TINY_CONFIG, run_tool_in_process, tiny_run_options

METRICS = ('coco_panoptic/PQ', 'coco_panoptic/PQ_th', 'coco_panoptic/PQ_st', 'mIoU',
           'coco/segm_mAP')


def _scores(shapes_root, checkpoint, work, classes):
    option = f'test_dataloader.dataset.metainfo.classes=[{",".join(classes)}]'
    result = run_tool_in_process(['test.py', TINY_CONFIG, checkpoint, '--work-dir', work,
                                  '--cfg-options', *tiny_run_options(shapes_root), option])
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if 'coco_panoptic/PQ:' in ln)
    found = dict(re.findall(r'(\S+): (-?[\d.]+|nan)', line))
    return {name: float(found[name]) for name in METRICS if name in found}


def test_a_reordered_subset_scores_the_same_in_every_metric(shapes_root, tiny_checkpoint,
                                                            tmp_path):
    """The same classes in two orders (stuff listed before things in one): the model, the
    dataset's labels, PQ, mIoU and mask AP must agree on which label is which class, so every
    score is identical. A metric that maps labels by the file's order (mmdet's CocoMetric
    alone) scores the second order differently."""
    ordered = _scores(shapes_root, tiny_checkpoint, tmp_path / 'a',
                      ['circle', 'square', 'triangle', 'sky', 'grass'])
    shuffled = _scores(shapes_root, tiny_checkpoint, tmp_path / 'b',
                       ['grass', 'triangle', 'sky', 'circle', 'square'])
    assert set(ordered) == set(METRICS)
    assert shuffled == pytest.approx(ordered)

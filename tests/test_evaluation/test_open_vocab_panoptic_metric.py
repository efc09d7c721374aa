"""PQ over an evaluated vocabulary that is a reordered subset of the annotation file's."""
import math

import pytest
from mmdet.evaluation import CocoPanopticMetric

from openseg_core.datasets.errors import DatasetError
from openseg_core.datasets.shapes import HELD_OUT_CLASSES, STUFF_CLASSES, THING_CLASSES
from openseg_core.evaluation import OpenVocabPanopticMetric

from .test_panoptic_metrics import _gt_as_prediction

# Held-out classes left out and the file's order broken, as an ADE20K-style file (things and
# stuff interleaved by id) gives once openseg puts things first.
VOCABULARY = tuple(reversed([c for c in THING_CLASSES if c not in HELD_OUT_CLASSES])) + tuple(
    reversed(STUFF_CLASSES))


def _metric(cls, shapes_root, meta):
    metric = cls(ann_file=str(shapes_root / 'annotations/panoptic_val.json'),
                 seg_prefix=str(shapes_root / 'annotations/panoptic_val'), nproc=1,
                 classwise=True)
    metric.dataset_meta = meta
    return metric


def test_perfect_prediction_over_a_reordered_subset_scores_100(shapes_root):
    samples, meta, _ = _gt_as_prediction(shapes_root, classes=VOCABULARY)
    metric = _metric(OpenVocabPanopticMetric, shapes_root, meta)
    metric.process({}, samples)
    result = metric.compute_metrics(metric.results)
    assert result['PQ'] == pytest.approx(100) and result['PQ_th'] == pytest.approx(100)
    # The class-wise table pairs names with categories by position.
    assert [c['name'] for c in metric.categories.values()] == list(VOCABULARY)


def test_mmdet_metric_mislabels_the_same_predictions(shapes_root):
    """Why the subclass exists: mmdet maps label i to the file's i-th category."""
    samples, meta, _ = _gt_as_prediction(shapes_root, classes=VOCABULARY)
    metric = _metric(CocoPanopticMetric, shapes_root, meta)
    metric.process({}, samples)
    assert metric.compute_metrics(metric.results)['PQ'] < 50


def test_class_missing_from_the_file_is_a_clear_error(shapes_root):
    samples, meta, _ = _gt_as_prediction(shapes_root)
    meta = dict(meta, classes=meta['classes'] + ('hexagon',))
    with pytest.raises(DatasetError, match=r"\['hexagon'\] are not among the categories"):
        _metric(OpenVocabPanopticMetric, shapes_root, meta)


@pytest.mark.parametrize('group', ['things', 'stuff'])
def test_a_vocabulary_without_a_group_reports_it_not_applicable(shapes_root, group):
    """panopticapi divides by the number of classes of a group: zero for a things-only or
    stuff-only vocabulary."""
    kept = THING_CLASSES if group == 'things' else STUFF_CLASSES
    kept = tuple(c for c in kept if c not in HELD_OUT_CLASSES)
    samples, meta, _ = _gt_as_prediction(shapes_root, classes=kept)
    metric = _metric(OpenVocabPanopticMetric, shapes_root, meta)
    metric.process({}, samples)
    result = metric.compute_metrics(metric.results)
    present, absent = ('th', 'st') if group == 'things' else ('st', 'th')
    assert result['PQ'] == pytest.approx(100) and result[f'PQ_{present}'] == pytest.approx(100)
    assert all(math.isnan(result[f'{m}_{absent}']) for m in ('PQ', 'SQ', 'RQ'))


def test_class_groups_average_over_their_classes(shapes_root):
    samples, meta, _ = _gt_as_prediction(shapes_root, drop_first_thing=True, classes=VOCABULARY)
    things = tuple(c for c in VOCABULARY if c in THING_CLASSES)
    metric = OpenVocabPanopticMetric(
        ann_file=str(shapes_root / 'annotations/panoptic_val.json'),
        seg_prefix=str(shapes_root / 'annotations/panoptic_val'), nproc=1,
        class_groups=dict(all_things=things, held_out=HELD_OUT_CLASSES, sky=('sky',)))
    metric.dataset_meta = meta
    metric.process({}, samples)
    result = metric.compute_metrics(metric.results)
    assert result['PQ_th'] < 100  # a dropped thing
    for key in ('PQ', 'SQ', 'RQ'):
        assert result[f'{key}_all_things'] == pytest.approx(result[f'{key}_th'])
    assert result['PQ_sky'] == pytest.approx(100)
    # The held-out classes are not in this vocabulary: not applicable, not 0.
    assert math.isnan(result['PQ_held_out'])

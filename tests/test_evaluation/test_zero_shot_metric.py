import pytest
import torch

from openseg_core.evaluation import ZeroShotCropMetric

META = dict(thing_classes=('circle', 'square', 'star'), stuff_classes=('sky', 'grass'))


def _evaluate(samples):
    metric = ZeroShotCropMetric()
    metric.dataset_meta = META
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def _sample(label, group, predicted):
    score = torch.full((5,), 0.01)
    score[predicted] = 0.9
    return dict(gt_label=label, group=group, pred_score=score)


def test_perfect_and_wrong_predictions():
    cases = [(0, 'seen'), (1, 'seen'), (2, 'held_out'), (3, 'stuff'), (4, 'stuff')]
    perfect = _evaluate([_sample(label, group, label) for label, group in cases])
    assert perfect['top1_seen'] == perfect['top1_held_out'] == perfect['top1_stuff'] == 100
    assert perfect['top1_things'] == perfect['top1_star'] == 100
    wrong = _evaluate([_sample(label, group, (label + 1) % 3 if label < 3 else 7 - label)
                       for label, group in cases])
    assert wrong['top1_seen'] == wrong['top1_held_out'] == wrong['top1_stuff'] == 0


def test_a_crop_competes_only_with_its_own_kind():
    # The best score overall is a stuff class, but a thing crop is named among things only:
    # 2 of 3 seen crops right (66.7), the stuff patch among stuff only (right).
    samples = [dict(gt_label=0, group='seen', pred_score=torch.tensor([.3, .1, .1, .5, 0])),
               dict(gt_label=1, group='seen', pred_score=torch.tensor([.1, .2, .1, .6, 0])),
               dict(gt_label=1, group='seen', pred_score=torch.tensor([.2, .1, .1, .6, 0])),
               dict(gt_label=4, group='stuff', pred_score=torch.tensor([.9, 0, 0, .04, .06]))]
    result = _evaluate(samples)
    assert result['top1_seen'] == pytest.approx(200 / 3)
    assert result['top1_stuff'] == 100 and 'top1_held_out' not in result


def test_missing_fields_and_empty_runs_are_clear_errors():
    with pytest.raises(ValueError, match='pred_score'):
        _evaluate([dict(gt_label=0, group='seen')])
    with pytest.raises(ValueError, match='no samples'):
        _evaluate([])

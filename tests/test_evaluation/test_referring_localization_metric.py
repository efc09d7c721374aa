import pytest
import torch

from openseg_core.evaluation import ReferringLocalizationMetric, box_iou


def test_box_iou_hand_computed():
    a = torch.tensor([[0., 0., 10., 10.]])
    b = torch.tensor([[5., 0., 15., 10.], [20., 20., 30., 30.], [0., 0., 10., 10.]])
    # overlap 5x10=50, union 100+100-50=150
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 0.0, 1.0]]))


def test_accuracy_counts_iou_at_least_the_threshold():
    metric = ReferringLocalizationMetric(thresholds=(0.5, 0.75))
    gt = torch.tensor([[0., 0., 10., 10.]])
    samples = [
        dict(pred_instances=dict(bboxes=torch.tensor([[0., 0., 10., 10.], [50, 50, 60, 60]])),
             gt_bboxes=gt),                                        # IoU 1 (first row counts)
        dict(pred_instances=dict(bboxes=torch.tensor([[0., 0., 10., 5.]])), gt_bboxes=gt),
        # IoU exactly 0.5 counts as right at 0.5
        dict(pred_instances=dict(bboxes=torch.zeros(0, 4)), gt_bboxes=gt),  # no box: 0
        dict(pred_instances=dict(bboxes=torch.tensor([[5., 0., 15., 10.]])), gt_bboxes=gt),
    ]
    metric.process({}, samples)
    result = metric.compute_metrics(metric.results)
    assert result['Acc@0.5'] == pytest.approx(50.0)
    assert result['Acc@0.75'] == pytest.approx(25.0)
    assert result['mIoU'] == pytest.approx(100 * (1 + 0.5 + 0 + 1 / 3) / 4)


def test_missing_ground_truth_box_is_a_clear_error():
    metric = ReferringLocalizationMetric()
    with pytest.raises(ValueError, match="meta_keys"):
        metric.process({}, [dict(pred_instances=dict(bboxes=torch.zeros(1, 4)))])

import pytest
import torch
from mmdet.structures.mask import BitmapMasks

from openseg_core.evaluation import ReferringSegMetric


def _sample(pred_box, gt_box, size=10):
    pred, gt = torch.zeros(1, size, size, dtype=torch.bool), torch.zeros(1, size, size)
    pred[0, pred_box[0]:pred_box[1], pred_box[2]:pred_box[3]] = True
    gt[0, gt_box[0]:gt_box[1], gt_box[2]:gt_box[3]] = 1
    return dict(pred_instances=dict(masks=pred),
                gt_masks=BitmapMasks(gt.numpy().astype('uint8'), size, size))


def test_hand_computed_ciou_miou_precision():
    metric = ReferringSegMetric(thresholds=(0.5,))
    # 1: exact, I=U=20.  2: pred 4x5=20 inside gt 8x5=40 -> I=20, U=40, IoU 0.5.
    # 3: disjoint, I=0, U=20+20=40.
    metric.process({}, [_sample((0, 4, 0, 5), (0, 4, 0, 5)),
                        _sample((0, 4, 0, 5), (0, 8, 0, 5)),
                        _sample((0, 4, 0, 5), (5, 9, 5, 10))])
    result = metric.compute_metrics(metric.results)
    assert result['cIoU'] == pytest.approx(100 * 40 / 100)
    assert result['mIoU'] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    assert result['Pr@0.5'] == pytest.approx(100 / 3)  # IoU must exceed the threshold

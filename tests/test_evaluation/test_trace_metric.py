import pytest
import torch
from mmdet.structures.mask import BitmapMasks

from openseg_core.evaluation import TraceQualityMetric


def _sample(trace, **extra):
    masks = torch.zeros(3, 10, 10, dtype=torch.uint8)
    masks[0, :5, :5] = 1   # square, top left
    masks[1, 5:, 5:] = 1   # circle, bottom right
    masks[2, :5, 5:] = 1   # another square, top right
    return dict(pred_trace=trace, gt_masks=BitmapMasks(masks.numpy(), 10, 10),
                gt_bboxes_labels=torch.tensor([0, 1, 0]), **extra)


def test_object_words_hit_their_objects_masks():
    metric = TraceQualityMetric(classes=('square', 'circle', 'star'))
    trace = [dict(word='a', point=[9, 9]),          # not an object word
             dict(word='square,', point=[2.7, 1.2]),  # inside the first square
             dict(word='circle', point=[1, 1]),      # outside the circle
             dict(word='star', point=[1, 1]),        # no star in the image: not counted
             dict(word='Square', point=[7.9, 4.99])]  # inside the second square
    metric.process({}, [_sample(trace)])
    result = metric.compute_metrics(metric.results)
    assert result['object_words'] == 3
    assert result['point_in_mask'] == pytest.approx(100 * 2 / 3)
    assert result['mention_recall'] == pytest.approx(100.0)  # 2 squares + 1 circle named
    assert 'L1' not in result


def test_mention_recall_and_teacher_forced_l1():
    metric = TraceQualityMetric(classes=('square', 'circle'))
    forced = [dict(word='a', box=[0, 0, 2, 2]), dict(word='square', box=[1, 1, 3, 5])]
    gt = torch.tensor([[float('nan')] * 4, [0., 0.1, 0.3, 0.3]])  # fractions of 10 x 10
    metric.process({}, [_sample([dict(word='square', point=[20, 20])], forced_trace=forced,
                                gt_word_boxes=gt, ori_shape=(10, 10))])
    result = metric.compute_metrics(metric.results)
    assert result['point_in_mask'] == 0.0  # outside the image
    assert result['mention_recall'] == pytest.approx(100 / 3)
    assert result['L1'] == pytest.approx((1 + 0 + 0 + 2) / 4)  # the word with a target only
    assert result['L1_object'] == result['L1']  # 'square' is the one object word


def test_object_l1_keeps_apart_the_words_that_name_an_object():
    metric = TraceQualityMetric(classes=('square', 'circle'))
    forced = [dict(word='water', box=[0, 0, 10, 10]), dict(word='circle', box=[5, 5, 10, 10]),
              dict(word='star', box=[0, 0, 1, 1])]
    gt = torch.tensor([[0., 0., 1., 1.],        # right on
                       [0., 0., 0.5, 0.5],      # 5 px off on every side
                       [0.9, 0.9, 1., 1.]])     # 'star': no star in the image
    metric.process({}, [_sample([], forced_trace=forced, gt_word_boxes=gt,
                                ori_shape=(10, 10))])
    result = metric.compute_metrics(metric.results)
    assert result['L1'] == pytest.approx((0 + 5 + 9) / 3)
    assert result['L1_object'] == pytest.approx(5.0)

import pytest
import torch

from openseg_core.evaluation import DenseCaptionMetric, exact_meteor, merge_overlapping_boxes


def test_exact_meteor_hand_computed():
    assert exact_meteor('the red square', ['the red square']) == pytest.approx(
        1 - 0.5 * (1 / 3) ** 3)  # one chunk of 3 matches
    # 2 of 3 words match in 2 chunks: P = R = 2/3, F = 2/3, penalty 0.5 (2/2)^3
    assert exact_meteor('the blue square', ['the red square']) == pytest.approx(2 / 3 * 0.5)
    assert exact_meteor('a circle', ['the red square', 'a circle']) > 0.9  # best reference
    assert exact_meteor('blue', ['red square']) == 0.0


def test_merge_overlapping_ground_truth():
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 11.], [50., 50., 60., 60.]])
    merged, caps = merge_overlapping_boxes(boxes, [['a'], ['b'], ['c']])
    assert caps == [['a', 'b'], ['c']]
    torch.testing.assert_close(merged[0], torch.tensor([0., 0., 10., 10.5]))


def test_visual_genome_map_hand_computed():
    metric = DenseCaptionMetric(similarity='exact_meteor', iou_thresholds=(0.5,),
                                meteor_thresholds=(0.0,))
    gt = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]])
    pred = dict(bboxes=torch.tensor([[0., 0., 10., 10.],     # right box, right caption
                                     [0., 0., 10., 10.],     # same box again: already used
                                     [20., 20., 30., 30.]]),  # right box, wrong caption
                scores=torch.tensor([0.9, 0.8, 0.7]),
                captions=['the red square', 'the red square', 'green'])
    metric.process({}, [dict(pred_instances=pred, gt_bboxes=gt,
                             gt_captions=[['the red square'], ['the blue circle']])])
    result = metric.compute_metrics(metric.results)
    # ranked: TP, FP, FP -> recall 0.5 at precision 1: AP = 51 of 100 recall points
    assert result['mAP'] == pytest.approx(100 * 0.51)
    # detection only: TP, FP, TP -> precision 1 up to recall 0.5, 2/3 up to recall 1
    assert result['mAP_detection'] == pytest.approx(100 * (51 * 1 + 49 * 2 / 3) / 100)


def test_unknown_similarity_is_refused():
    with pytest.raises(ValueError, match='similarity'):
        DenseCaptionMetric(similarity='bleu')


@pytest.mark.skipif(__import__('shutil').which('java') is None, reason='METEOR 1.5 needs Java')
def test_meteor_similarity_runs_the_official_scorer():
    metric = DenseCaptionMetric(iou_thresholds=(0.5,))
    gt = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]])
    pred = dict(bboxes=gt.clone(), scores=torch.tensor([0.9, 0.7]),
                captions=['the red square', 'a green star'])
    metric.process({}, [dict(pred_instances=pred, gt_bboxes=gt,
                             gt_captions=[['the red square'], ['the blue circle']])])
    result = metric.compute_metrics(metric.results)
    # the first caption is right at every METEOR threshold, the second at none: AP 0.51 each
    assert result['mAP'] == pytest.approx(51.0)
    assert result['mAP_detection'] == pytest.approx(100.0)

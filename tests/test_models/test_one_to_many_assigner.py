import torch
from mmengine.structures import InstanceData

from openseg_core.models.detection import OneToManyAssigner


def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float)


def test_each_target_trains_its_best_overlapping_queries_up_to_k():
    gt = InstanceData(bboxes=_boxes([0, 0, 10, 10], [50, 50, 70, 70]), labels=torch.tensor([3, 1]))
    preds = _boxes([0, 0, 10, 10],      # IoU 1.00 with target 0
                   [0, 0, 10, 11],      # 0.91
                   [1, 0, 10, 10],      # 0.90
                   [0, 0, 12, 10],      # 0.83
                   [2, 2, 10, 10],      # 0.64
                   [50, 50, 70, 70],    # IoU 1.00 with target 1
                   [90, 90, 99, 99])    # far from both
    assigner = OneToManyAssigner(pos_iou_thr=0.6, pos_fraction=1.0, max_k=3)
    torch.manual_seed(0)
    q, g = assigner.match(InstanceData(bboxes=preds), gt)
    pairs = sorted(zip(g.tolist(), q.tolist()))
    # Target 0 has five positives but trains only its three best; target 1 its one.
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 5)]


def test_low_quality_matches_give_every_target_a_query():
    """A target no prediction overlaps by 0.6 still gets its best one (detectron2's
    allow_low_quality_matches), as DETA's proposals need early in training."""
    gt = InstanceData(bboxes=_boxes([0, 0, 10, 10]), labels=torch.tensor([0]))
    preds = _boxes([5, 0, 15, 10], [40, 40, 50, 50])  # IoU 0.33 and 0
    q, g = OneToManyAssigner(pos_iou_thr=0.6, pos_fraction=1.0).match(
        InstanceData(bboxes=preds), gt)
    assert q.tolist() == [0] and g.tolist() == [0]
    q, _ = OneToManyAssigner(pos_iou_thr=0.6, pos_fraction=1.0, match_low_quality=False).match(
        InstanceData(bboxes=preds), gt)
    assert q.numel() == 0


def test_positives_are_capped_by_the_sample_budget():
    gt = InstanceData(bboxes=_boxes([0, 0, 10, 10], [20, 0, 30, 10]), labels=torch.tensor([0, 1]))
    preds = torch.cat([_boxes([0, 0, 10, 10]).repeat(4, 1), _boxes([20, 0, 30, 10]).repeat(4, 1)])
    # 8 positives, budget 4 * 0.5 = 2 kept at random, each target keeps its share.
    q, g = OneToManyAssigner(pos_iou_thr=0.7, num_samples=4, pos_fraction=0.5,
                             max_k=4).match(InstanceData(bboxes=preds), gt)
    assert len(q) == 2


def test_no_target_no_assignment():
    q, g = OneToManyAssigner(pos_iou_thr=0.6).match(
        InstanceData(bboxes=_boxes([0, 0, 1, 1])),
        InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)))
    assert q.numel() == g.numel() == 0


def test_iou_is_detas_with_the_epsilon_added_to_the_union():
    """On normalised boxes DETA's ``inter / (union + 1e-6)`` puts a small box whose plain
    IoU is 0.606 at 0.600: below a 0.605 threshold that mmdet's ``bbox_overlaps`` passes."""
    gt = InstanceData(bboxes=_boxes([0, 0, 0.01, 0.01]), labels=torch.tensor([0]))
    preds = InstanceData(bboxes=_boxes([0, 0, 0.01, 0.00606]))  # inter / union = 0.606
    assigner = OneToManyAssigner(pos_iou_thr=0.605, pos_fraction=1.0, match_low_quality=False)
    q, _ = assigner.match(preds, gt)
    assert q.numel() == 0  # 6.06e-5 / (1e-4 + 1e-6) = 0.6000
    q, _ = OneToManyAssigner(pos_iou_thr=0.599, pos_fraction=1.0,
                             match_low_quality=False).match(preds, gt)
    assert q.tolist() == [0]

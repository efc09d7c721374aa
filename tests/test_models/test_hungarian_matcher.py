import torch
from mmengine.structures import InstanceData

from openseg_core.models import HungarianMatcher

MASK2FORMER_COSTS = [dict(type='ClassificationCost', weight=2.0),
                     dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                     dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)]


def _targets():
    masks = torch.zeros(3, 32, 32)
    masks[0, :16, :16] = 1
    masks[1, 16:, :] = 1
    masks[2, :16, 20:] = 1
    return torch.tensor([0, 2, 1]), masks


def test_masks_recover_a_permutation():
    labels, masks = _targets()
    order = torch.tensor([3, 0, 4])  # target g is predicted by query order[g]
    mask_logits = torch.full((5, 32, 32), -10.0)
    cls_logits = torch.zeros(5, 4)
    for g, q in enumerate(order.tolist()):
        mask_logits[q] = masks[g] * 20 - 10
        cls_logits[q, labels[g]] = 10
    matcher = HungarianMatcher(MASK2FORMER_COSTS, num_points=256)
    q_idx, g_idx = matcher.match(InstanceData(scores=cls_logits, masks=mask_logits),
                                 InstanceData(labels=labels, masks=masks))
    assert dict(zip(g_idx.tolist(), q_idx.tolist())) == {0: 3, 1: 0, 2: 4}
    empty_q, _ = matcher.match(InstanceData(scores=cls_logits, masks=mask_logits),
                               InstanceData(labels=labels[:0], masks=masks[:0]))
    assert empty_q.numel() == 0


def test_box_costs_are_a_config_line():
    """Sigmoid class cost + L1 + GIoU on boxes, no masks: DETR-style matching."""
    matcher = HungarianMatcher([dict(type='FocalLossCost', weight=2.0),
                                dict(type='BBoxL1Cost', weight=5.0, box_format='xyxy'),
                                dict(type='IoUCost', iou_mode='giou', weight=2.0)])
    gt = InstanceData(labels=torch.tensor([1, 0]),
                      bboxes=torch.tensor([[0., 0., 50., 50.], [50., 50., 100., 100.]]))
    # Queries 2 and 0 sit on targets 0 and 1; the classes alone would pair them otherwise.
    boxes = torch.tensor([[50., 50., 100., 100.], [0., 0., 10., 10.], [0., 0., 50., 50.]])
    scores = torch.tensor([[0., 3.], [3., 0.], [3., 0.]])
    q_idx, g_idx = matcher.match(InstanceData(scores=scores, bboxes=boxes), gt,
                                 dict(img_shape=(100, 100)))
    assert dict(zip(g_idx.tolist(), q_idx.tolist())) == {0: 2, 1: 0}

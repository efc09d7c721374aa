import pytest
import torch
from mmengine.structures import InstanceData

from openseg_core.models import MaskClassificationCriterion, MaskClassificationOutput

MATCHER = dict(type='HungarianMatcher', num_points=256, match_costs=[
    dict(type='ClassificationCost', weight=2.0),
    dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
    dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)])
FOCAL = dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25)


def _targets():
    masks = torch.zeros(3, 32, 32)
    masks[0, :16, :16] = 1
    masks[1, 16:, :] = 1
    masks[2, :16, 20:] = 1
    return [InstanceData(labels=torch.tensor([0, 2, 1]), masks=masks)]


def _good_and_bad(columns, no_object_column):
    good_masks = torch.full((1, 5, 32, 32), -10.0)
    good_cls = torch.full((1, 5, columns), -10.0)
    if no_object_column:
        good_cls[0, 3:, -1] = 10  # unmatched queries say "no object"
    for g, label in enumerate([0, 2, 1]):
        good_masks[0, g] = _targets()[0].masks[g] * 20 - 10
        good_cls[0, g, label] = 10
    torch.manual_seed(1)
    return (good_cls, good_masks), (torch.randn(1, 5, columns), torch.randn(1, 5, 32, 32))


@pytest.mark.parametrize('classification', ['softmax', 'sigmoid'])
def test_right_answer_scores_lower_at_every_layer(classification):
    torch.manual_seed(0)
    sigmoid = classification == 'sigmoid'
    criterion = MaskClassificationCriterion(
        matcher=dict(MATCHER, match_costs=[dict(type='FocalLossCost', weight=2.0)]
                     + MATCHER['match_costs'][1:]) if sigmoid else MATCHER,
        num_points=256, **(dict(loss_cls=dict(FOCAL, loss_weight=2.0)) if sigmoid else {}))
    assert criterion.classification == classification
    (good_cls, good_masks), (bad_cls, bad_masks) = _good_and_bad(
        3 if sigmoid else 4, no_object_column=not sigmoid)
    out = criterion(MaskClassificationOutput([bad_cls, good_cls], [bad_masks, good_masks]),
                    _targets())
    assert set(out) == {'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls', 'd0.loss_mask',
                        'd0.loss_dice'}
    assert out['loss_cls'] < 0.01 < out['d0.loss_cls']
    # Uncertainty sampling picks boundary points, where even a perfect mask's interpolated
    # logits carry entropy: the mask terms drop by a clear factor, not to zero.
    for name in ('loss_mask', 'loss_dice'):
        assert out[name] < 0.5 * out['d0.' + name]
    empty = criterion(MaskClassificationOutput([bad_cls], [bad_masks]),
                      [InstanceData(labels=torch.zeros(0, dtype=torch.long),
                                    masks=torch.zeros(0, 32, 32))])
    assert empty['loss_mask'] == 0 and empty['loss_cls'] > 0


def test_softmax_cross_entropy_weights_no_object_as_mask2former():
    """loss_cls = w * sum_q c_q CE_q / sum_q c_q with c = 1 (matched), 0.1 (no object)."""
    torch.manual_seed(0)
    criterion = MaskClassificationCriterion(matcher=MATCHER, num_points=256)
    (_, good_masks), (bad_cls, _) = _good_and_bad(4, True)
    out = criterion.layer_loss(bad_cls, good_masks, _targets())
    labels = torch.tensor([0, 2, 1, 3, 3])  # good masks: queries 0-2 match targets 0-2
    weights = torch.tensor([1.0, 1.0, 1.0, 0.1, 0.1])
    expected = 2.0 * torch.nn.functional.cross_entropy(bad_cls[0], labels, weight=torch.tensor(
        [1.0, 1.0, 1.0, 0.1]))
    torch.testing.assert_close(out['loss_cls'], expected, rtol=1e-5, atol=1e-6)
    assert weights.sum() == pytest.approx(3.2)


def test_mask_bce_becomes_focal_in_the_config():
    torch.manual_seed(0)
    bce = MaskClassificationCriterion(matcher=MATCHER, num_points=256)
    torch.manual_seed(0)
    focal = MaskClassificationCriterion(matcher=MATCHER, num_points=256,
                                        loss_mask=dict(FOCAL, loss_weight=5.0))
    _, (bad_cls, bad_masks) = _good_and_bad(4, True)
    torch.manual_seed(0)
    with_bce = bce.layer_loss(bad_cls, bad_masks, _targets())
    torch.manual_seed(0)
    with_focal = focal.layer_loss(bad_cls, bad_masks, _targets())
    # Same matching and points: only the mask term changes, and focal down-weights the easy
    # points, so it is smaller than the BCE.
    torch.testing.assert_close(with_bce['loss_cls'], with_focal['loss_cls'])
    torch.testing.assert_close(with_bce['loss_dice'], with_focal['loss_dice'])
    assert 0 < with_focal['loss_mask'] < with_bce['loss_mask']

import torch

from openseg_core.models import HungarianMaskMatcher, MaskClassificationLoss


def _targets():
    masks = torch.zeros(3, 32, 32)
    masks[0, :16, :16] = 1
    masks[1, 16:, :] = 1
    masks[2, :16, 20:] = 1
    return torch.tensor([0, 2, 1]), masks


def test_matcher_recovers_a_permutation():
    labels, masks = _targets()
    order = torch.tensor([3, 0, 4])  # target g is predicted by query order[g]
    mask_logits = torch.full((5, 32, 32), -10.0)
    cls_logits = torch.zeros(5, 4)
    for g, q in enumerate(order.tolist()):
        mask_logits[q] = masks[g] * 20 - 10
        cls_logits[q, labels[g]] = 10
    q_idx, g_idx = HungarianMaskMatcher(num_points=256).match(cls_logits, mask_logits, labels,
                                                              masks)
    assert dict(zip(g_idx.tolist(), q_idx.tolist())) == {0: 3, 1: 0, 2: 4}
    empty_q, _ = HungarianMaskMatcher().match(cls_logits, mask_logits, labels[:0], masks[:0])
    assert empty_q.numel() == 0


def test_loss_is_lower_for_the_right_answer_and_deeply_supervised():
    torch.manual_seed(0)
    labels, masks = _targets()
    loss = MaskClassificationLoss(matcher=dict(type='HungarianMaskMatcher', num_points=256),
                                  num_points=256)
    good_masks = torch.full((1, 5, 32, 32), -10.0)
    good_cls = torch.zeros(1, 5, 4)
    good_cls[0, 3:, 3] = 10  # unmatched queries say "no object"
    for g in range(3):
        good_masks[0, g] = masks[g] * 20 - 10
        good_cls[0, g, labels[g]] = 10
    bad_masks, bad_cls = torch.randn(1, 5, 32, 32), torch.randn(1, 5, 4)
    out = loss([bad_cls, good_cls], [bad_masks, good_masks], [labels], [masks])
    assert set(out) == {'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls', 'd0.loss_mask',
                        'd0.loss_dice'}
    assert out['loss_cls'] < 0.01 < out['d0.loss_cls']
    # Uncertainty sampling picks boundary points, where even a perfect mask's interpolated
    # logits carry entropy: the mask terms drop by a clear factor, not to zero.
    for name in ('loss_mask', 'loss_dice'):
        assert out[name] < 0.5 * out['d0.' + name]
    empty = loss([bad_cls], [bad_masks], [labels[:0]], [masks[:0]])
    assert empty['loss_mask'] == 0 and empty['loss_cls'] > 0

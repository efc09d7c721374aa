"""APE's criterion: DETA or Hungarian assignment, every layer and the proposals, per-task
loss masks and the federated class loss."""
import pytest
import torch
from mmengine.structures import InstanceData

from openseg_ape.models import APECriterion
from openseg_ape.models.ape import APEOutput
from openseg_core.structures import OpenSegDataSample

LAYERS, QUERIES, PROMPTS, SIZE = 3, 12, 5, 32


def _output(seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).requires_grad_()
    boxes = [torch.rand(2, QUERIES, 4, generator=gen).mul(0.5).add(0.2).requires_grad_()
             for _ in range(LAYERS)]
    anchors = torch.rand(2, 40, 4, generator=gen) * 0.5 + 0.2
    return APEOutput([rand(2, QUERIES, PROMPTS) for _ in range(LAYERS)], boxes,
                     rand(2, QUERIES, 8, 8), boxes[0].detach().clone(), rand(2, 40, 1),
                     anchors.clone().requires_grad_(), anchors, torch.zeros(PROMPTS, 4))


def _samples(with_masks=(True, True)):
    samples = []
    for masks in with_masks:
        sample = OpenSegDataSample(metainfo=dict(img_shape=(SIZE, SIZE),
                                                 batch_input_shape=(SIZE, SIZE)))
        gt = InstanceData(labels=torch.tensor([0, 3]),
                          bboxes=torch.tensor([[2., 2., 14., 14.], [10., 12., 30., 30.]]))
        if masks:
            m = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
            m[0, 2:14, 2:14] = m[1, 12:30, 10:30] = True
            gt.masks = m
        sample.gt_instances = gt
        samples.append(sample)
    return samples


def _loss(criterion, out, tasks=('generic', 'generic'), columns=None, vocabulary=()):
    samples = _samples()
    labels = [s.gt_instances.labels for s in samples]
    columns = torch.ones(2, PROMPTS, dtype=torch.bool) if columns is None else columns
    return criterion(out, samples, labels, columns, list(tasks),
                     [s.metainfo for s in samples], vocabulary=vocabulary)


def test_every_layer_and_the_proposals_are_supervised():
    torch.manual_seed(0)
    losses = _loss(APECriterion(), _output())
    expected = {'loss_cls', 'loss_bbox', 'loss_iou', 'loss_mask', 'loss_dice', 'enc.loss_cls',
                'enc.loss_bbox', 'enc.loss_iou'}
    expected |= {f'd{i}.loss_{t}' for i in range(LAYERS - 1) for t in ('cls', 'bbox', 'iou')}
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()


def test_hungarian_matching_is_a_config_line():
    matcher = dict(type='HungarianMatcher', match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)])
    criterion = APECriterion(assigner=None, enc_assigner=None, matcher=matcher)
    losses = _loss(criterion, _output())
    assert all(torch.isfinite(v) for v in losses.values())
    # One query per target: the class loss counts two positives per image.
    assert losses['loss_cls'] > 0


def test_task_loss_weights_mask_a_dataset_s_losses():
    torch.manual_seed(0)
    criterion = APECriterion(task_loss_weights=dict(grounding=dict(
        enc_cls=0.0, bbox=0.0, iou=0.0, mask=0.0, dice=0.0, enc_bbox=0.0, enc_iou=0.0)))
    out = _output()
    losses = _loss(criterion, out, tasks=('grounding', 'grounding'))
    for key, value in losses.items():
        if key.endswith('loss_cls') and not key.startswith('enc'):
            assert value > 0, key
        else:
            assert value == 0, key
    # One grounding and one generic sample: the generic one still trains everything.
    torch.manual_seed(0)
    mixed = _loss(criterion, out, tasks=('grounding', 'generic'))
    assert mixed['loss_bbox'] > 0 and mixed['enc.loss_cls'] > 0
    with pytest.raises(ValueError, match="unknown terms \\['boxes'\\]"):
        APECriterion(task_loss_weights=dict(grounding=dict(boxes=0.0)))


def test_the_class_loss_covers_only_each_image_s_prompts():
    out = _output()
    columns = torch.tensor([[True, True, True, True, False]] * 2)
    losses = _loss(APECriterion(), out, columns=columns)
    grad, = torch.autograd.grad(losses['loss_cls'], out.cls_logits[-1])
    assert grad[..., 4].abs().sum() == 0 and grad[..., :4].abs().sum() > 0


def test_federated_loss_samples_negatives_among_the_vocabulary():
    vocabulary = [f'class {i}' for i in range(PROMPTS)]
    criterion = APECriterion(federated=dict(num_classes=3))
    out = _output()
    torch.manual_seed(0)
    losses = _loss(criterion, out, vocabulary=vocabulary)
    grad, = torch.autograd.grad(losses['loss_cls'], out.cls_logits[-1])
    trained = (grad.abs().sum((0, 1)) > 0).nonzero()[:, 0].tolist()
    # The batch's classes (0 and 3) and one sampled negative: 3 of the 5 columns.
    assert len(trained) == 3 and {0, 3} <= set(trained)

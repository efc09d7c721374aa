"""APE's inference rules: the semantic accumulation, its streamed form, exact top-k NMS and
the panoptic merge by thing ids."""
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from torchvision.ops import batched_nms

from openseg_ape.models import semantic_map, semantic_probabilities, topk_after_nms
from openseg_ape.models.ape import APEOutput
from openseg_ape.models.postprocess import APEPostProcessor
from openseg_core.models.base import Vocabulary


def test_accumulation_matches_a_hand_computed_case():
    # Two queries, two classes, two pixels. S = softmax_c(sigmoid(logits) / T).
    logits = torch.tensor([[0.0, -10.0], [10.0, 0.0]])
    probs = semantic_probabilities(logits, temperature=0.5)
    sig = torch.sigmoid(logits)
    by_hand = torch.stack([torch.softmax(sig[i] / 0.5, 0) for i in range(2)])
    torch.testing.assert_close(probs, by_hand)
    # Query 0 (class 0 leaning) covers pixel 0, query 1 (class 0 strongly, then class 1)
    # covers pixel 1 partly.
    masks = torch.tensor([[[1.0, 0.0]], [[0.2, 0.9]]])  # (Q, H=1, W=2)
    m_hat = torch.einsum('qc,qhw->chw', probs, masks)
    expected_pixel1 = probs[1] * 0.9
    torch.testing.assert_close(m_hat[:, 0, 1], expected_pixel1)
    torch.testing.assert_close(m_hat[:, 0, 0], probs[0] * 1.0 + probs[1] * 0.2)
    labels, values = semantic_map(probs, masks, chunk=None)
    assert labels.tolist() == m_hat.argmax(0).tolist()
    torch.testing.assert_close(values, m_hat.max(0)[0])


def test_streamed_semantic_map_equals_the_dense_one():
    torch.manual_seed(0)
    probs = semantic_probabilities(torch.randn(30, 2500) * 3, temperature=0.06)
    masks = torch.rand(30, 17, 23)
    dense_labels, dense_values = semantic_map(probs, masks, chunk=None)
    for chunk in (1, 7, 1000):
        labels, values = semantic_map(probs, masks, chunk=chunk)
        assert torch.equal(labels, dense_labels), chunk
        torch.testing.assert_close(values, dense_values)


def test_rescaled_semantic_map_resizes_the_class_map_not_the_masks():
    # APE sums S^T M at the input's size and resizes the (C, H, W) map to the original image
    # (sem_seg_postprocess). Resizing the mask logits first moves labels near boundaries.
    torch.manual_seed(0)
    probs = semantic_probabilities(torch.randn(12, 9) * 3, temperature=0.06)
    mask_logits = torch.randn(12, 10, 14) * 4
    size = (23, 31)
    m_hat = torch.einsum('qc,qhw->chw', probs, mask_logits.sigmoid())
    official = torch.nn.functional.interpolate(m_hat[None], size=size, mode='bilinear',
                                               align_corners=False)[0].argmax(0)
    logits_first = torch.nn.functional.interpolate(mask_logits[None], size=size,
                                                   mode='bilinear', align_corners=False)[0]
    for chunk in (None, 2, 1000):
        labels, _ = semantic_map(probs, mask_logits.sigmoid(), chunk=chunk, size=size)
        assert labels.shape == size
        assert torch.equal(labels, official), chunk
    other, _ = semantic_map(probs, logits_first.sigmoid(), chunk=None)
    assert not torch.equal(other, official)  # the order matters on this case


def _brute_force(scores, boxes, topk, nms_thr):
    """detectron2's fast_rcnn_inference with one box per query: NMS over every pair."""
    queries, classes = torch.meshgrid(torch.arange(scores.shape[0]),
                                      torch.arange(scores.shape[1]), indexing='ij')
    keep = batched_nms(boxes[queries.flatten()], scores.flatten(), classes.flatten(), nms_thr)
    keep = keep[:topk]
    return queries.flatten()[keep], classes.flatten()[keep], scores.flatten()[keep]


def test_topk_after_nms_equals_nms_over_every_pair():
    torch.manual_seed(0)
    centres = torch.rand(40, 2) * 50
    boxes = torch.cat([centres, centres + 10 + torch.rand(40, 2) * 5], 1)
    boxes[20:] = boxes[:20] + torch.rand(20, 4)  # overlapping duplicates NMS removes
    scores = torch.rand(40, 300)
    for topk in (1, 10, 100):
        ours = topk_after_nms(scores, boxes, topk, 0.7)
        reference = _brute_force(scores, boxes, topk, 0.7)
        for a, b in zip(ours, reference):
            assert torch.equal(a, b), topk


def _output(cls_logits, mask_logits, boxes):
    return APEOutput([cls_logits], [boxes], mask_logits, boxes, torch.zeros(1, 1, 1),
                     torch.zeros(1, 1, 4), torch.zeros(1, 1, 4), torch.zeros(2, 8))


def test_panoptic_merge_numbers_things_and_merges_stuff():
    """Thing ids decide instances: two queries of thing class 0 are two segments, two
    regions of stuff class 1 one segment (APE trains stuff regions as instances)."""
    size = 8
    masks = torch.full((4, size, size), -20.0)
    masks[0, :4, :4] = masks[1, :4, 4:] = 20.0   # two circles
    masks[2, 4:, :4] = masks[3, 4:, 4:] = 20.0   # two sky regions
    cls = torch.full((1, 4, 2), -20.0)
    cls[0, :2, 0] = cls[0, 2:, 1] = 5.0
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5],
                           [0.25, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]]])
    out = _output(cls, masks[None], boxes)
    meta = dict(img_shape=(size, size), ori_shape=(size, size), batch_input_shape=(size, size))
    post = APEPostProcessor(topk=10)
    result = post.vocabulary(out, 0, Vocabulary(('circle',), ('sky',)), meta)
    pan = result['pred_panoptic_seg'].sem_seg[0]
    assert set(pan[:4].unique().tolist()) == {0 + INSTANCE_OFFSET, 0 + 2 * INSTANCE_OFFSET}
    assert pan[4:].unique().tolist() == [1]
    assert result['pred_sem_seg'].sem_seg[0, :4].unique().tolist() == [0]
    instances = result['pred_instances']  # over the thing classes only, best first
    assert instances.labels.tolist() == [0] * 4 and instances.masks.shape == (4, size, size)
    assert (instances.scores[:2] > 0.99).all() and (instances.scores[2:] < 1e-6).all()
    # Declared stuff, class 0 becomes one merged segment.
    result = post.vocabulary(out, 0, Vocabulary((), ('circle', 'sky')), meta)
    assert result['pred_panoptic_seg'].sem_seg[0, :4].unique().tolist() == [0]

import pytest
import torch

from openseg_core.models import MaskPostProcessor, Vocabulary

VOCABULARY = Vocabulary(('circle', 'square'), ('sky',))
META = dict(batch_input_shape=(8, 8), img_shape=(8, 8), ori_shape=(8, 8))


def _case(classification):
    # 2 things + 1 stuff; query 0: thing 0 on the left, query 1: stuff on the right,
    # query 2: nothing ("no object" for softmax, every class improbable for sigmoid).
    masks = torch.full((3, 8, 8), -10.0)
    masks[0, :, :4] = 10
    masks[1, :, 4:] = 10
    if classification == 'softmax':
        cls = torch.full((3, 4), -10.0)
        cls[0, 0] = cls[1, 2] = cls[2, 3] = 10
    else:
        cls = torch.full((3, 3), -10.0)
        cls[0, 0] = cls[1, 2] = 10
    return cls[None], masks[None]


@pytest.mark.parametrize('classification', ['softmax', 'sigmoid'])
def test_panoptic_semantic_instance_on_a_hand_case(classification):
    cls, masks = _case(classification)
    post = MaskPostProcessor(max_per_image=5, classification=classification)
    result = post.predict(cls, masks, [META], VOCABULARY)[0]
    pan = result['pred_panoptic_seg'].sem_seg[0]
    assert (pan[:, :4] == 0 + 1000).all()  # thing 0, instance 1 (mmdet's INSTANCE_OFFSET)
    assert (pan[:, 4:] == 2).all()
    sem = result['pred_sem_seg'].sem_seg[0]
    assert (sem[:, :4] == 0).all() and (sem[:, 4:] == 2).all()
    ins = result['pred_instances']
    best = ins.scores.argmax()
    assert ins.labels[best] == 0 and ins.masks[best][:, :4].all()
    assert (ins.labels < 2).all()  # stuff never becomes an instance


def test_results_are_mapped_back_to_the_original_size():
    cls, masks = _case('softmax')
    meta = dict(batch_input_shape=(8, 8), img_shape=(8, 4), ori_shape=(32, 16))
    result = MaskPostProcessor(max_per_image=5).predict(cls, masks, [meta], VOCABULARY)[0]
    assert result['pred_panoptic_seg'].sem_seg.shape == (1, 32, 16)
    # The padded right half (the stuff query's) is cropped before resizing.
    assert (result['pred_sem_seg'].sem_seg == 0).all()


def test_logits_must_fit_the_vocabulary_and_rule():
    cls, masks = _case('softmax')
    with pytest.raises(ValueError, match='expected 3'):
        MaskPostProcessor(classification='sigmoid').predict(cls, masks, [META], VOCABULARY)


def test_mask_boxes_equal_mmdet_mask2bbox():
    from mmdet.structures.mask import mask2bbox

    from openseg_core.models.mask_classification.postprocessor import mask_boxes
    logits = torch.randn(6, 9, 13) - 2.5  # sparse positives
    logits[0] = -1  # empty
    logits[1] = -1
    logits[1, 8, 12] = 1  # one pixel in the far corner
    logits[2] = -1
    logits[2, 0, 0] = 1
    logits[3] = 0  # logit 0 is outside (sigmoid 1/2 is not > 1/2)
    boxes = mask_boxes(logits)
    torch.testing.assert_close(boxes, mask2bbox(logits > 0), rtol=0, atol=0)
    assert boxes[1].tolist() == [12, 8, 13, 9] and boxes[0].tolist() == [0, 0, 0, 0]


def _instance_by_definition(post, cls, masks, vocabulary):
    """The instance rule written out (mmdet's ``MaskFormerFusionHead.instance_postprocess``)."""
    probs = post.class_probs(cls)
    scores, top = probs.flatten().topk(min(post.max_per_image, probs.numel()), sorted=False)
    labels = top % probs.shape[1]
    queries = top // probs.shape[1]
    thing = labels < vocabulary.num_things
    scores, labels, queries = scores[thing], labels[thing], queries[thing]
    binary = masks[queries] > 0
    sigmoid = masks[queries].sigmoid()
    mask_scores = (sigmoid * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return scores * mask_scores, labels, binary


@pytest.mark.parametrize('max_per_image', [3, 40])  # some queries, every query
@pytest.mark.parametrize('with_probs', [False, True])
def test_instances_equal_the_rule_written_out(max_per_image, with_probs):
    torch.manual_seed(0)
    vocabulary = Vocabulary(('circle', 'square', 'star'), ('sky',))
    cls, masks = torch.randn(7, 5) * 3, torch.randn(7, 16, 12) * 4
    masks[2] = -5  # an empty mask scores 0
    post = MaskPostProcessor(max_per_image=max_per_image)
    result = post.instance(cls, masks, vocabulary, masks.sigmoid() if with_probs else None)
    scores, labels, binary = _instance_by_definition(post, cls, masks, vocabulary)
    assert torch.equal(result.labels, labels) and torch.equal(result.masks, binary)
    torch.testing.assert_close(result.scores, scores, rtol=1e-6, atol=1e-7)
    from mmdet.structures.mask import mask2bbox
    torch.testing.assert_close(result.bboxes, mask2bbox(binary), rtol=0, atol=0)


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic_antialias'])
def test_masks_resized_when_indexed_equal_all_masks_resized(interpolation):
    from openseg_core.models.mask_classification.postprocessor import MasksAtOutputSize
    from openseg_core.models.mask_classification.query_decoder import resize_masks
    logits = torch.randn(5, 6, 8)
    # Padded input 24 x 32, the image its top-left 20 x 30, shown at 41 x 60.
    expected = resize_masks(logits[None], (24, 32), interpolation)[:, :, :20, :30]
    expected = resize_masks(expected, (41, 60), interpolation)[0]
    masks = MasksAtOutputSize(logits, (24, 32), (20, 30), (41, 60), interpolation)
    assert masks.shape == (5, 41, 60)
    assert torch.equal(masks[torch.tensor([3, 1])], expected[[3, 1]])
    assert torch.equal(masks[:], expected)
    keep = torch.tensor([False, True, True, False, True])  # the panoptic rule's index
    assert torch.equal(masks[keep], expected[keep])
    assert masks[torch.zeros(5, dtype=torch.bool)].shape == (0, 41, 60)  # nothing kept


def test_outputs_without_the_semantic_map_are_the_same():
    # Without the semantic map no (Q, H, W) tensor is made: masks are resized as read.
    torch.manual_seed(0)
    cls, masks = torch.randn(1, 7, 4) * 3, torch.randn(1, 7, 6, 8) * 4
    meta = dict(batch_input_shape=(24, 32), img_shape=(20, 30), ori_shape=(41, 60))
    kwargs = dict(max_per_image=6, object_mask_thr=0.3, iou_thr=0.1)
    full = MaskPostProcessor(**kwargs).predict(cls, masks, [meta], VOCABULARY)[0]
    lazy = MaskPostProcessor(semantic_on=False, **kwargs).predict(cls, masks, [meta],
                                                                  VOCABULARY)[0]
    assert 'pred_sem_seg' not in lazy
    assert full['pred_panoptic_seg'].sem_seg.unique().numel() > 2  # several segments
    assert torch.equal(lazy['pred_panoptic_seg'].sem_seg, full['pred_panoptic_seg'].sem_seg)
    for key in ('masks', 'labels', 'bboxes'):
        assert torch.equal(lazy['pred_instances'][key], full['pred_instances'][key])
    torch.testing.assert_close(lazy['pred_instances'].scores, full['pred_instances'].scores)

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

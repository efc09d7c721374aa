"""The APE model: a request mixing words and sentences, multi-source training batches and
the history bank of negative sentences."""
import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from openseg_ape.models import is_sentence, split_prompts
from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.structures import OpenSegDataSample

pytestmark = pytest.mark.usefixtures('single_thread')
SIZE = 64


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = MODELS.build(load_config('ape::ape_tiny_shapes.py').model)
    model.init_weights()
    model.set_vocabulary(['circle', 'square'], ['sky'])
    return model


def _sample(task, **fields):
    sample = OpenSegDataSample(metainfo=dict(
        img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
        pad_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0), **fields.pop('metainfo', {})))
    masks = np.zeros((2, SIZE, SIZE), np.uint8)
    masks[0, 4:20, 4:20] = masks[1, 30:60, 20:50] = 1
    sample.gt_instances = InstanceData(
        labels=torch.tensor(fields.pop('labels', [0, 1])),
        bboxes=torch.tensor([[4., 4., 20., 20.], [20., 30., 50., 60.]]),
        masks=BitmapMasks(masks, SIZE, SIZE))
    sample.task = task
    for name, value in fields.items():
        setattr(sample, name, value)
    return sample


def test_a_request_is_split_into_words_and_sentences():
    prompts = split_prompts('circle, the red square on the left ,,sky, a star')
    assert prompts == ['circle', 'the red square on the left', 'sky', 'a star']
    assert [is_sentence(p) for p in prompts] == [False, True, False, True]


def test_detections_name_the_prompts_of_the_request(model):
    model.eval()
    inputs = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    samples = [_sample('generic')]
    request = ['circle', 'the red square on the left', 'sky']
    with torch.no_grad():
        found = model.detect(inputs, samples, request)[0]
        reordered = model.detect(inputs, samples, request[::-1])[0]
    assert len(found) == model.postprocessor.topk and found.masks.shape[1:] == (SIZE, SIZE)
    assert found.labels.max() < 3
    # The same pass in another order: the same detections, labels naming the same prompts.
    named = sorted((round(float(s), 5), request[int(l)]) for s, l in zip(found.scores,
                                                                          found.labels))
    renamed = sorted((round(float(s), 5), request[::-1][int(l)])
                     for s, l in zip(reordered.scores, reordered.labels))
    assert named == renamed
    with pytest.raises(ValueError, match='no prompts'):
        model.detect(inputs, samples, [])


def test_one_batch_trains_detection_grounding_and_referring(model):
    model.train()
    model.sentence_bank.zero_()
    samples = [_sample('generic', labels=[0, 2]),
               _sample('grounding', labels=[0, 1],
                       metainfo=dict(phrases=['the red square', 'a blue circle'])),
               _sample('referring', labels=[0, 0], text='the big sky')]
    inputs = torch.randn(3, 3, SIZE, SIZE)
    prompts, labels, tasks = model._training_prompts(samples)
    # Vocabulary (3), the batch's sentences (3), the rest of the bank (32 - 3) as negatives.
    assert len(prompts) == 3 + 3 + 29
    assert [lab.tolist() for lab in labels] == [[0, 2], [3, 4], [5, 5]]
    sees = prompts.visible
    assert sees[0, :3].all() and not sees[0, 3:].any()
    assert not sees[1:, :3].any() and sees[1:, 3:].all()
    # The bank now starts with this batch's sentences.
    with torch.no_grad():
        expected = model.embed_sentences(['the red square', 'a blue circle', 'the big sky'])
    torch.testing.assert_close(model.sentence_bank[:3], expected)
    losses = model.loss(inputs, samples)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.cls_branches[0].dot_product_projection_text.weight.grad is not None


def test_a_generic_label_outside_the_vocabulary_is_refused(model):
    with pytest.raises(ValueError, match='label 7 but the vocabulary has 3 classes'):
        model._training_prompts([_sample('generic', labels=[0, 7])])

import pytest
import torch

from openseg_core.datasets import PackOpenSegInputs
from openseg_core.structures import SAMPLE_FIELDS, OpenSegDataSample


def test_fields_are_typed():
    sample = OpenSegDataSample()
    sample.text = 'the red square'
    sample.captions = ['a', 'b']
    sample.pred_points = torch.zeros(3, 2, 2)
    assert sample.text == 'the red square' and 'text' in sample
    with pytest.raises(TypeError, match='pred_caption must be str'):
        sample.pred_caption = ['not', 'a', 'string']
    with pytest.raises(TypeError, match='pred_image_embed must be Tensor'):
        sample.pred_image_embed = [0.0]
    assert sample.get('task', 'generic') == 'generic'  # unset fields read as missing


def test_fields_reach_metrics_under_their_names():
    sample = OpenSegDataSample(metainfo=dict(img_id=3))
    sample.pred_caption = 'a circle'
    sample.captions = ['a red circle']
    as_dict = sample.to_dict()  # what mmengine's evaluator hands to metrics
    assert as_dict['pred_caption'] == 'a circle' and as_dict['captions'] == ['a red circle']
    assert not any(k.startswith('_') for k in as_dict)
    assert set(SAMPLE_FIELDS) >= {'text', 'captions', 'task', 'pred_caption'}


def test_packing_puts_language_fields_into_the_typed_sample():
    results = dict(img=torch.zeros(4, 4, 3).numpy().astype('uint8'), img_shape=(4, 4),
                   ori_shape=(4, 4), text='the circle', task='referring',
                   captions=('one', 'two'))
    packed = PackOpenSegInputs(meta_keys=('img_shape', 'ori_shape'))(results)
    sample = packed['data_samples']
    assert isinstance(sample, OpenSegDataSample)
    assert (sample.text, sample.task, sample.captions) == ('the circle', 'referring',
                                                          ['one', 'two'])
    assert sample.metainfo == dict(img_shape=(4, 4), ori_shape=(4, 4))
    assert packed['inputs'].shape == (3, 4, 4)

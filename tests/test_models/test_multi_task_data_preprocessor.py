"""A batch mixing panoptic, referring and caption samples pads each sample's own targets."""
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData

from openseg_core.registry import MODELS, TRANSFORMS


def _sample(with_masks, with_sem):
    sample = DetDataSample(metainfo=dict(img_shape=(50, 60), ori_shape=(50, 60)))
    sample.gt_instances = InstanceData()
    if with_masks:
        sample.gt_instances.masks = BitmapMasks(np.ones((1, 50, 60), np.uint8), 50, 60)
        sample.gt_instances.labels = torch.zeros(1, dtype=torch.long)
    if with_sem:
        sample.gt_sem_seg = PixelData(sem_seg=torch.zeros(1, 50, 60, dtype=torch.long))
    return sample


@pytest.mark.parametrize('type_name', ['MultiTaskDataPreprocessor', 'DetDataPreprocessor'])
def test_caption_sample_first_then_masks(type_name):
    preprocessor = MODELS.build(dict(type=type_name, pad_size_divisor=32, pad_mask=True,
                                     pad_seg=True, seg_pad_value=255))
    data = dict(inputs=[torch.zeros(3, 50, 60, dtype=torch.uint8)] * 3,
                data_samples=[_sample(False, False), _sample(True, True), _sample(True, False)])
    if type_name == 'DetDataPreprocessor':
        # mmdet looks at the first sample only: the masks behind it stay unpadded.
        out = preprocessor(data, True)
        assert out['data_samples'][1].gt_instances.masks.masks.shape[-2:] == (50, 60)
        return
    out = preprocessor(data, True)
    assert out['inputs'].shape[-2:] == (64, 64)
    assert out['data_samples'][1].gt_instances.masks.masks.shape[-2:] == (64, 64)
    assert out['data_samples'][2].gt_instances.masks.masks.shape[-2:] == (64, 64)
    assert out['data_samples'][1].gt_sem_seg.sem_seg.shape[-2:] == (64, 64)
    assert 'masks' not in out['data_samples'][0].gt_instances


def test_set_task_tags_the_sample():
    assert TRANSFORMS.build(dict(type='SetTask', task='referring'))({})['task'] == 'referring'
    with pytest.raises(ValueError, match='needs a task'):
        TRANSFORMS.build(dict(type='SetTask', task=''))

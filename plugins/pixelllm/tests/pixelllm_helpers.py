"""Builders shared by the PixelLLM tests: the tiny model, small samples. (Not a conftest:
plugins' test folders share pytest's rootdir, so their module names must be unique.)"""
import copy

import pytest
import torch
from mmengine.structures import InstanceData

from openseg_core.engine.cli import load_config
from openseg_core.structures import OpenSegDataSample


@pytest.fixture(scope='session')
def tiny_cfg():
    """The model config of the tiny referring config (mask head included)."""
    return load_config('pixelllm::pixelllm_tiny_shapes_referring.py').model


def build(cfg, **changes):
    from openseg_core.registry import MODELS
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        cfg[key] = value
    torch.manual_seed(0)
    return MODELS.build(cfg)


def sample(task, text=None, size=64, box=(8.0, 8.0, 40.0, 32.0), **fields):
    """A preprocessed sample of ``task`` on a ``size`` x ``size`` image."""
    s = OpenSegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        batch_input_shape=(size, size),
                                        pad_shape=(size, size), scale_factor=(1.0, 1.0)))
    s.task = task
    if text is not None:
        s.text = text
    if task in ('referring', 'loc_captioning'):
        from mmdet.structures.mask import BitmapMasks
        masks = torch.zeros(1, size, size, dtype=torch.uint8)
        x1, y1, x2, y2 = (int(v) for v in box)
        masks[0, y1:y2, x1:x2] = 1
        s.gt_instances = InstanceData(bboxes=torch.tensor([box]), labels=torch.tensor([0]),
                                      masks=BitmapMasks(masks.numpy(), size, size))
    for key, value in fields.items():
        s.set_field(value, key)
    return s

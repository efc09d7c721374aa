"""The reference model built from the tiny config, and the interface contracts."""
import pytest
import torch
from mmengine.config import Config
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData
from mmdet.structures.mask import BitmapMasks

from openseg_core.models import interfaces
from openseg_core.plugins import load_plugins
from openseg_core.registry import MODELS

from ..conftest import TINY_CONFIG


@pytest.fixture(scope='module')
def model():
    load_plugins()
    cfg = Config.fromfile(str(TINY_CONFIG))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_vocabulary(['circle', 'square'], ['sky'])
    return model


def _batch(model, n=2, size=64):
    samples = []
    for i in range(n):
        masks = torch.zeros(1, size, size, dtype=torch.uint8)
        masks[0, 10:30, 10:30] = 1
        sem = torch.full((1, size, size), 2)
        sem[masks.bool()] = 0
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        batch_input_shape=(size, size)))
        s.gt_instances = InstanceData(labels=torch.tensor([0]),
                                      bboxes=torch.tensor([[10., 10., 30., 30.]]),
                                      masks=BitmapMasks(masks.numpy(), size, size))
        s.gt_sem_seg = PixelData(sem_seg=sem)
        samples.append(s)
    return torch.randn(n, 3, size, size), samples


def test_loss_and_backward(model):
    inputs, samples = _batch(model)
    losses = model.loss(inputs, samples)
    assert {'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls'} <= set(losses)
    total = sum(losses.values())
    total.backward()
    assert model.query_decoder.query_feat.weight.grad is not None
    assert model.text_encoder.tower.token_embedding.weight.grad is None  # frozen


def test_predict_gives_all_three_outputs_batched(model):
    model.eval()
    inputs, samples = _batch(model, n=3)
    with torch.no_grad():
        out = model.predict(inputs, samples)
    assert len(out) == 3
    for s in out:
        assert s.pred_panoptic_seg.sem_seg.shape == (1, 64, 64)
        assert s.pred_sem_seg.sem_seg.max() < 3
        assert (s.pred_instances.labels < 2).all()
    model.train()


def test_vocabulary_changes_without_rebuilding(model):
    inputs, samples = _batch(model, n=1)
    model.set_vocabulary(['a', 'b', 'c', 'd'], [])
    with torch.no_grad():
        logits = model._forward(inputs)['cls_logits'][-1]
    assert logits.shape[-1] == 5
    with pytest.raises(ValueError, match='empty'):
        model.set_vocabulary([], [])
    model.set_vocabulary(['circle', 'square'], ['sky'])


def test_parts_satisfy_the_interfaces(model):
    assert isinstance(model.backbone, interfaces.Backbone)
    assert isinstance(model.text_encoder, interfaces.TextEncoder)
    assert isinstance(model.pixel_decoder, interfaces.PixelDecoder)
    assert isinstance(model.query_decoder, interfaces.QueryDecoder)
    assert isinstance(model.loss_module.matcher, interfaces.Matcher)
    assert isinstance(model.head, interfaces.Head)
    feats = model.backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
    mask_features, memories = model.pixel_decoder(list(feats))
    assert mask_features.shape[-2:] == (16, 16)
    assert [m.shape[-1] for m in memories] == [2, 4, 8]

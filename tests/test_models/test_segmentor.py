"""The reference model built from the tiny config."""
import pytest
import torch
from mmengine.config import Config

from openseg_core.models import OpenSegModel, Vocabulary
from openseg_core.plugins import load_plugins, resolve_config
from openseg_core.registry import MODELS
from openseg_core.testing import TINY_CONFIG
from openseg_core.testing.synthetic import synthetic_batch


@pytest.fixture(scope='module')
def model():
    load_plugins()
    cfg = Config.fromfile(resolve_config(TINY_CONFIG))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_vocabulary(['circle', 'square'], ['sky'])
    return model


def test_is_an_openseg_model_with_a_criterion(model):
    assert isinstance(model, OpenSegModel)
    assert model.criterion.classification == model.head.classification == 'softmax'


def test_loss_and_backward(model):
    inputs, samples = synthetic_batch('panoptic')
    losses = model(inputs, samples, mode='loss')
    assert {'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls'} <= set(losses)
    sum(losses.values()).backward()
    assert model.query_decoder.query_feat.weight.grad is not None
    assert model.text_encoder.tower.token_embedding.weight.grad is None  # frozen


def test_predict_gives_all_three_outputs_batched(model):
    model.eval()
    inputs, samples = synthetic_batch('panoptic', batch=3)
    with torch.no_grad():
        out = model(inputs, samples, mode='predict')
    assert len(out) == 3
    for s in out:
        assert s.pred_panoptic_seg.sem_seg.shape == (1, 64, 64)
        assert s.pred_sem_seg.sem_seg.max() < 3
        assert (s.pred_instances.labels < 2).all()
    model.train()


def test_vocabulary_changes_without_rebuilding(model):
    inputs, _ = synthetic_batch('panoptic', batch=1)
    model.set_vocabulary(['a', 'b', 'c', 'd'], [])
    with torch.no_grad():
        logits = model(inputs, mode='tensor').cls_logits[-1]
    assert logits.shape[-1] == 5  # four classes + "no object"
    model.set_vocabulary(Vocabulary(('circle', 'square'), ('sky',)))
    assert model.vocabulary.names == ('circle', 'square', 'sky')


def test_parts_must_agree_on_the_classification_rule():
    cfg = Config.fromfile(resolve_config(TINY_CONFIG))
    cfg.model.head.classification = 'sigmoid'
    with pytest.raises(ValueError, match='classification rule differs'):
        MODELS.build(cfg.model)


def test_sigmoid_classification_is_a_config_change():
    cfg = Config.fromfile(resolve_config(TINY_CONFIG))
    cfg.model.head.classification = 'sigmoid'
    cfg.model.postprocessor.classification = 'sigmoid'
    cfg.model.criterion.loss_cls = dict(type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0,
                                        alpha=0.25, loss_weight=2.0)
    cfg.model.criterion.matcher.match_costs[0] = dict(type='FocalLossCost', weight=2.0)
    with pytest.raises(ValueError, match='region_ensemble combines softmax probabilities'):
        MODELS.build(cfg.model)
    cfg.model.pop('region_ensemble')  # FC-CLIP's ensemble is defined for softmax classifiers
    model = MODELS.build(cfg.model)
    model.set_vocabulary(['circle', 'square'], ['sky'])
    inputs, samples = synthetic_batch('panoptic')
    assert model(inputs, mode='tensor').cls_logits[-1].shape[-1] == 3  # no "no object"
    losses = model(inputs, samples, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())


def _tiny_model(**ensemble):
    cfg = Config.fromfile(resolve_config(TINY_CONFIG))
    cfg.model.region_ensemble.update(ensemble)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.set_vocabulary(['circle', 'square', 'star'], ['sky'])
    return model


def test_region_ensemble_with_zero_weights_predicts_as_the_learned_classifier():
    # predict() fills the samples it is given: a fresh batch each time.
    with torch.no_grad():
        plain = _tiny_model(alpha_seen=0.0, alpha_unseen=0.0).predict(
            *synthetic_batch('panoptic'))
        ensembled = _tiny_model(alpha_seen=0.0, alpha_unseen=1.0).predict(
            *synthetic_batch('panoptic'))
    cfg = Config.fromfile(resolve_config(TINY_CONFIG))
    cfg.model.pop('region_ensemble')
    torch.manual_seed(0)
    learned = MODELS.build(cfg.model).eval()
    learned.set_vocabulary(['circle', 'square', 'star'], ['sky'])
    with torch.no_grad():
        reference = learned.predict(*synthetic_batch('panoptic'))
    for a, b in zip(plain, reference):
        assert torch.equal(a.pred_panoptic_seg.sem_seg, b.pred_panoptic_seg.sem_seg)
    # CLIP alone decides the unseen class "star" now: the instance scores move.
    assert any(a.pred_instances.scores.shape != b.pred_instances.scores.shape
               or not torch.allclose(a.pred_instances.scores, b.pred_instances.scores)
               for a, b in zip(ensembled, reference))


def test_region_ensemble_needs_a_clip_image_backbone():
    cfg = Config.fromfile(resolve_config('openseg_core::reference/ovseg_tiny_shapes_scratch.py'))
    cfg.model.region_ensemble = dict(type='CLIPRegionEnsemble')
    with pytest.raises(ValueError, match='ResNet is no CLIP image tower: use '
                                         'OpenCLIPImageBackbone'):
        MODELS.build(cfg.model)

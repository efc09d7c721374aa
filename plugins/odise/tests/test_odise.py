"""Both ODISE models on synthetic batches: their losses, open-vocabulary inference with
synonyms and held-out names, the CLIP ensemble and the lean mode."""
import numpy as np
import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.testing.synthetic import synthetic_batch
from openseg_odise.models.lean import make_lean


def build(name):
    torch.manual_seed(0)
    model = MODELS.build(load_config(f'odise::{name}').model)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def label_model():
    return build('odise_tiny_shapes_label.py')


@pytest.fixture(scope='module')
def caption_model():
    return build('odise_tiny_shapes_caption.py')


def test_label_model_trains_only_its_heads(label_model):
    label_model.train()
    label_model.set_vocabulary(['circle', 'square'], ['sky'])
    inputs, samples = synthetic_batch('panoptic', batch=2, size=64)
    losses = label_model.loss(inputs.sigmoid(), samples)
    assert {'loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls', 'd3.loss_dice'} <= set(losses)
    sum(losses.values()).backward()
    trainable = {n for n, p in label_model.named_parameters() if p.requires_grad}
    assert 'head.null_embed' in trainable and 'backbone.captioner.alpha_cond' in trainable
    assert not any(n.startswith(('backbone.extractor.', 'text_encoder.',
                                 'backbone.captioner.image_encoder.')) for n in trainable)
    label_model.eval()


def test_null_embedding_starts_at_clips_empty_caption():
    model = build('odise_tiny_shapes_label.py')
    torch.testing.assert_close(model.head.null_embed, model.text_encoder(['']).pooled)


def test_synonyms_and_held_out_names_at_inference(label_model):
    label_model.eval()
    inputs, samples = synthetic_batch('panoptic', batch=1, size=64)
    label_model.set_vocabulary(['circle, ring', 'star'], ['sky'])
    with torch.no_grad():
        logits, masks = label_model.open_logits(inputs.sigmoid(), samples)
        mask_embeds = label_model.decode(inputs.sigmoid())[1][-1]
        per_name = label_model.head(mask_embeds, label_model.text_embeds(['circle', 'ring']))
    assert logits.shape == (1, 20, 4)
    torch.testing.assert_close(logits[..., 0], per_name[..., :2].amax(-1))
    ensemble = label_model.region_ensemble
    assert ensemble.alphas(label_model.vocabulary).tolist() == pytest.approx([0.3, 0.7, 0.3])
    with torch.no_grad():
        out = label_model.predict(inputs.sigmoid(), samples)
    assert out[0].pred_panoptic_seg.sem_seg.shape == (1, 64, 64)
    assert int(out[0].pred_sem_seg.sem_seg.max()) < 3


def test_caption_model_grounds_its_masks_in_the_nouns(caption_model):
    caption_model.train()
    caption_model.set_vocabulary(['circle', 'square'], ['sky'])
    inputs, samples = synthetic_batch('panoptic', batch=2, size=64)
    samples[0].captions = ['a red square above a blue circle']
    samples[1].captions = ['sky']
    losses = caption_model.loss(inputs.sigmoid(), samples)
    assert {'loss_cls', 'loss_mask', 'loss_grounding', 'd0.loss_grounding',
            'd3.loss_grounding'} <= set(losses)
    assert losses['loss_grounding'] > 0
    losses['loss_grounding'].backward()
    assert caption_model.word_head.text_proj.weight.grad.abs().sum() > 0
    assert caption_model.mask_embed.pool_proj[1].weight.grad.abs().sum() > 0
    caption_model.zero_grad()
    np.random.seed(0)
    words, valid = caption_model.sample_words([['a red square above a blue circle'], []])
    assert len(words[0]) == 8 and set(words[0]) <= {'red square', 'blue circle',
                                                    'red square above'}
    assert words[1] == [''] * 8 and valid.tolist() == [[True] * 8, [False] * 8]
    caption_model.eval()


def test_caption_model_inference_multiplies_class_and_object_probabilities(caption_model):
    caption_model.eval()
    caption_model.set_vocabulary(['circle', 'diamond'], ['sky'])
    inputs, samples = synthetic_batch('panoptic', batch=1, size=64)
    with torch.no_grad():
        logits, _ = caption_model.open_logits(inputs.sigmoid(), samples)
    probs = logits.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 20), atol=1e-5, rtol=0)
    decoded, embeds = caption_model.decode(inputs.sigmoid())
    objectness = caption_model.head(decoded.query_embeds[-1]).softmax(-1)
    torch.testing.assert_close(probs[..., -1], objectness[..., 1], atol=1e-5, rtol=0)


def test_lean_mode_keeps_the_predictions(label_model):
    """Last in this file: it turns the shared model lean."""
    model = label_model.eval()
    model.set_vocabulary(['circle', 'square'], ['sky'])
    inputs, samples = synthetic_batch('panoptic', batch=1, size=64)
    with torch.no_grad():
        before = model.open_logits(inputs.sigmoid(), samples)[0]
    def size(module):
        return sum(p.numel() * p.element_size() for p in module.parameters())

    weights = size(model.backbone.extractor)
    make_lean(model, 'bfloat16')
    assert model.test_cfg['inference_mode']
    assert model.backbone.extractor.unet.conv_in.weight.dtype == torch.bfloat16
    assert size(model.backbone.extractor) < 0.5 * weights  # half precision, pruned
    with torch.no_grad():
        after = model.open_logits(inputs.sigmoid(), samples)[0]
    agree = (before.argmax(-1) == after.argmax(-1)).float().mean()
    assert agree > 0.8, agree  # bfloat16 frozen parts: the same classes, nearly everywhere
    out = model.predict(inputs.sigmoid(), samples)
    assert out[0].pred_panoptic_seg.sem_seg.shape == (1, 64, 64)

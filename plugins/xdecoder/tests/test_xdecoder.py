"""The X-Decoder model: mixed-task losses, batched prediction for every task, Fig. 4 effects."""
import functools

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from openseg_core.plugins import resolve_config
from openseg_core.registry import DATASETS, MODELS
from openseg_core.structures import OpenSegDataSample

THINGS = ('circle', 'square', 'triangle', 'cross')
STUFF = ('sky', 'grass', 'water', 'sand')


def _dataset(name, split, root):
    cfg = Config.fromfile(resolve_config(f'xdecoder::xdecoder_tiny_shapes_{name}.py'))
    loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
    dataset = loader.dataset
    dataset.data_root = f'{root}/'
    if name == 'referring':
        dataset.refs_file = f'annotations/refs_{split}.json'
        dataset.split = split
    return DATASETS.build(dataset)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    cfg = Config.fromfile(resolve_config('xdecoder::xdecoder_tiny_shapes_generic.py'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_vocabulary(THINGS, STUFF)
    return model


@pytest.fixture(scope='module')
def datasets(shapes_root):
    return {name: {split: _dataset(name, split, shapes_root) for split in ('train', 'val')}
            for name in ('generic', 'referring', 'captioning')}


def _token_feats(model, ids):
    return model.text_encoder.encode_ids(ids)


def _batch(model, datasets, split, per_task=2, training=True):
    items = [datasets[name][split][i] for name in ('generic', 'referring', 'captioning')
             for i in range(per_task)]
    return model.data_preprocessor(pseudo_collate(items), training)


def test_one_mixed_batch_trains_every_task(model, datasets):
    model.train()
    losses = model(**_batch(model, datasets, 'train'), mode='loss')
    for name in ('loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls', 'ref.loss_cls',
                 'ref.loss_mask', 'ref.loss_dice', 'ref.d0.loss_dice', 'loss_caption',
                 'loss_it'):
        assert name in losses and torch.isfinite(losses[name]), name
    # Caption CE starts near log(vocabulary): every token is about as likely.
    assert 5 < losses['loss_caption'].item() < 15
    model.zero_grad()
    sum(losses.values()).backward()
    for name in ('query_decoder.caption_pos.weight', 'query_decoder.global_query_feat.weight',
                 'head.caption_embed', 'head.class_embed', 'backbone.conv1.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@torch.no_grad()
def test_batched_prediction_for_every_task(model, datasets):
    model.eval()
    batch = _batch(model, datasets, 'val')
    samples = model(**batch, mode='predict')
    generic, referring, captioning = samples[:2], samples[2:4], samples[4:]
    for sample in generic:
        assert sample.pred_panoptic_seg.sem_seg.shape[-2:] == sample.ori_shape
        assert sample.pred_sem_seg.sem_seg.max() < len(THINGS + STUFF)
    for sample in referring:
        assert sample.pred_instances.masks.shape == (1,) + sample.ori_shape
        assert 0 <= sample.pred_instances.scores.item() <= 1
    for sample in captioning:
        assert isinstance(sample.pred_caption, str) and sample.pred_caption
        assert sample.pred_image_embed.shape == (64,)
        assert sample.pred_text_embeds.shape == (len(sample.captions), 64)


@torch.no_grad()
def test_a_task_gets_its_own_images_and_a_one_task_batch_is_not_copied(model, datasets):
    model.eval()
    feats = model.extract_feat(_batch(model, datasets, 'val', per_task=1)['inputs'])
    assert feats.take([0, 1, 2]) is feats
    for index in ([2, 0], torch.tensor([1])):
        sub = feats.take(index)
        picked = torch.as_tensor(index)
        assert torch.equal(sub.mask_features, feats.mask_features[picked])
        assert all(torch.equal(s, m[picked]) for s, m in zip(sub.memories, feats.memories))
        assert torch.equal(sub.pooled, feats.pooled[picked])


@torch.no_grad()
def test_caption_text_does_not_change_latent_outputs(model, datasets):
    """Fig. 4: under captioning, latent queries do not attend text; under referring, the
    object queries do, and the global query never does."""
    model.eval()
    feats = model.extract_feat(_batch(model, datasets, 'val', 1, False)['inputs'][:1])
    decode = functools.partial(model.query_decoder, feats.mask_features, feats.memories)
    text_a = _token_feats(model, torch.tensor([[49406, 320, 736]]))
    text_b = _token_feats(model, torch.tensor([[49406, 1746, 3999]]))
    cap_a = decode(task='captioning', text_queries=text_a)
    cap_b = decode(task='captioning', text_queries=text_b)
    retrieval = decode(task='retrieval')
    torch.testing.assert_close(cap_a.query_embeds[-1], cap_b.query_embeds[-1])
    torch.testing.assert_close(cap_a.global_embeds[-1], retrieval.global_embeds[-1])
    assert not torch.allclose(cap_a.text_embeds[-1], cap_b.text_embeds[-1])
    ref_a = decode(task='referring', text_queries=text_a)
    ref_b = decode(task='referring', text_queries=text_b)
    assert not torch.allclose(ref_a.query_embeds[-1], ref_b.query_embeds[-1])
    torch.testing.assert_close(ref_a.global_embeds[-1], retrieval.global_embeds[-1])


@torch.no_grad()
def test_region_restricts_what_caption_queries_see(model, datasets):
    model.eval()
    feats = model.extract_feat(_batch(model, datasets, 'val', 1, False)['inputs'][:1])
    decode = functools.partial(model.query_decoder, feats.mask_features, feats.memories)
    text = _token_feats(model, torch.tensor([[49406, 320]]))
    h, w = feats.mask_features.shape[-2:]
    corner = torch.zeros(1, h, w)
    corner[:, :h // 2, :w // 2] = 1
    full = decode(task='captioning', text_queries=text)
    inside = decode(task='captioning', text_queries=text,
                                 text_region=corner)
    everywhere = decode(task='captioning', text_queries=text,
                                     text_region=torch.ones(1, h, w))
    assert not torch.allclose(full.text_embeds[-1], inside.text_embeds[-1])
    torch.testing.assert_close(full.text_embeds[-1], everywhere.text_embeds[-1])
    torch.testing.assert_close(full.query_embeds[-1], inside.query_embeds[-1])


@torch.no_grad()
def test_captioning_greedy_beam_and_task_compositions(model, datasets):
    model.eval()
    model.test_cfg['max_caption_len'] = 6
    inputs = _batch(model, datasets, 'val', 2, False)['inputs'][-2:]
    feats = model.extract_feat(inputs)
    greedy = model.caption(feats, beam_size=1)
    beams = model.caption(feats, beam_size=5)
    assert len(greedy) == len(beams) == 2 and all(isinstance(c, str) for c in beams)
    out = model.region_retrieval(inputs, 'the red square', topk=1)
    assert out['indices'].tolist() == [int(out['scores'].argmax())]
    assert out['masks'].shape == (1,) + feats.mask_features.shape[-2:]
    out = model.referring_caption(inputs, ['the red square', 'a blue circle'], beam_size=2)
    assert len(out['captions']) == 2 and out['masks'].shape[0] == 2


def test_background_is_reserved_and_bad_tasks_are_named(model):
    with pytest.raises(ValueError, match='no object'):
        model.set_vocabulary(['background', 'dog'])
    sample = OpenSegDataSample()
    sample.task = 'vqa'
    with pytest.raises(ValueError, match="task 'vqa'; this X-Decoder has tasks"):
        model._group([sample])

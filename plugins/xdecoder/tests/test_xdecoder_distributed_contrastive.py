"""X-Decoder's image-text contrastive losses over the global batch: in 2 real processes
(gloo), each process scores its 2 images against all 4 captions and back-propagates the
4-pair loss's exact gradient once gradients are averaged across processes (as DDP does)."""
import torch
import torch.distributed as dist
from mmengine.config import Config

from openseg_core.testing.distributed import run_in_processes

WORLD, PER_RANK = 2, 2
CAPTIONS = ['a red circle on grass', 'two blue squares', 'a triangle over water',
            'a green cross in the sky']
PARAMS = ('head.class_embed', 'head.backbone_proj', 'query_decoder.global_query_feat.weight')


def _setup():
    from mmengine.registry import init_default_scope

    from openseg_core.plugins import load_plugins, resolve_config
    from openseg_core.registry import MODELS, SCOPE
    load_plugins()
    init_default_scope(SCOPE)
    torch.manual_seed(0)
    cfg = Config.fromfile(resolve_config('xdecoder::xdecoder_tiny_shapes_captioning.py'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()  # no batch statistics: the local and global batches see equal features


def _batch(model):
    """Features of the 4 images and their samples, the same in every process."""
    from openseg_core.structures import OpenSegDataSample
    from openseg_xdecoder.models.xdecoder import Features
    gen = torch.Generator().manual_seed(1)
    channels = model.query_decoder.decoder.embed_dims
    mask_features = torch.randn(4, channels, 8, 8, generator=gen)
    memories = [torch.randn(4, channels, s, s, generator=gen) for s in (2, 4, 8)]
    pooled = torch.randn(4, model.head.backbone_proj.shape[0], generator=gen)
    samples = [OpenSegDataSample(metainfo=dict(img_shape=(32, 32))) for _ in CAPTIONS]
    for sample, caption in zip(samples, CAPTIONS):
        sample.captions = [caption]
    return Features(mask_features, memories, pooled), samples


def _losses_and_grads(model, feats, samples, global_batch):
    task = model.tasks['captioning']
    task.global_batch = global_batch
    model.zero_grad()
    losses = task.loss(model, feats, samples)
    (losses['loss_it'] + losses['loss_it_backbone']).backward()
    params = dict(model.named_parameters())
    return ({k: float(losses[k]) for k in ('loss_it', 'loss_it_backbone')},
            {k: params[k].grad.clone() for k in PARAMS})


def _rank(rank: int, world: int):
    model = _setup()
    feats, samples = _batch(model)
    mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    local = feats.take(torch.arange(4)[mine])
    losses, grads = _losses_and_grads(model, local, samples[mine], global_batch=True)
    for grad in grads.values():  # what DDP does to the gradients
        dist.all_reduce(grad)
        grad /= world
    alone, _ = _losses_and_grads(model, local, samples[mine], global_batch=False)
    return losses, grads, alone


def test_each_process_contrasts_the_global_batch_with_its_exact_gradient():
    results = run_in_processes(_rank, WORLD)
    model = _setup()
    feats, samples = _batch(model)
    expected_losses, expected_grads = _losses_and_grads(model, feats, samples,
                                                        global_batch=False)
    for losses, grads, alone in results:
        for name, value in expected_losses.items():
            assert abs(losses[name] - value) < 1e-5 * max(1.0, abs(value)), name
            # The local batch alone is another loss (2 pairs, not 4).
            assert abs(alone[name] - value) > 1e-3, name
        for name, grad in expected_grads.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)

"""The reference model's outputs, losses and gradients on fixed weights equal those of the code
before its CPU speed-ups (issue 15), stored in ``data/reference_outputs_before_speedups.pt``.

The fixture was written by :func:`reference_outputs` at commit 53481e7 (before the speed-ups):
``torch.save(reference_outputs(), path)``. What changed since computes the same functions in
another order (deformable-attention sampling as one ``embedding_bag``, attention through
``scaled_dot_product_attention``, intermediate attention masks from resized mask features,
mask-logit gradients only for the matched queries, the backbone's batch norms folded into its
convolutions, 3 x 3 convolutions by Winograd's algorithm at inference), so results agree to
float rounding.
"""
from pathlib import Path

import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData

from openseg_core.models.layers import winograd
from openseg_core.plugins import resolve_config
from openseg_core.registry import MODELS

FIXTURE = Path(__file__).parent / 'data' / 'reference_outputs_before_speedups.pt'
CONFIG = 'openseg_core::reference/ovseg_tiny_shapes_scratch.py'
SIZE = 64
#: Gradients compared (small tensors of each part the speed-ups touch).
GRAD_KEYS = ('query_decoder.query_feat.weight', 'query_decoder.mask_embed.4.weight',
             'query_decoder.decoder.layers.0.cross_attn.attn.in_proj_bias',
             'query_decoder.decoder.layers.3.self_attn.attn.in_proj_bias',
             'pixel_decoder.encoder.layers.0.self_attn.sampling_offsets.bias',
             'pixel_decoder.encoder.layers.0.self_attn.attention_weights.bias',
             'pixel_decoder.encoder.layers.1.self_attn.value_proj.bias',
             'pixel_decoder.mask_feature.bias', 'head.proj.bias', 'backbone.conv1.weight')


def _model(channels_last: bool = False):
    torch.manual_seed(0)
    cfg = Config.fromfile(resolve_config(CONFIG))
    cfg.model.channels_last = channels_last
    # Random weights score every class about alike: keep more queries, so that things reach
    # the panoptic map.
    cfg.model.postprocessor.update(object_mask_thr=0.2, iou_thr=0.05)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.set_vocabulary(['circle', 'square', 'triangle'], ['sky', 'grass'])
    return model


def _batch(with_targets: bool):
    gen = torch.Generator().manual_seed(1)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=gen))
        sample = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                                             scale_factor=(1.0, 1.0)))
        if with_targets:
            masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
            masks[0, 8:34, 12:46] = 1
            masks[1, 40:60, 4:28] = 1
            sample.gt_instances = InstanceData(labels=torch.tensor([0, 2]),
                                               bboxes=torch.zeros(2, 4),
                                               masks=BitmapMasks(masks.numpy(), SIZE, SIZE))
            sem = torch.full((1, SIZE, SIZE), 255)
            sem[:, :6] = 3
            sem[:, 60:] = 4
            sample.gt_sem_seg = PixelData(sem_seg=sem)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _pack(masks: torch.Tensor) -> torch.Tensor:
    """Bool masks -> 8 pixels a byte (a small fixture)."""
    bits = masks.flatten().view(-1, 8).to(torch.uint8)
    return (bits << torch.arange(8, dtype=torch.uint8)).sum(1, dtype=torch.uint8)


def reference_outputs(channels_last: bool = False) -> dict:
    """Inference outputs, training losses and gradients of the tiny scratch model."""
    model = _model(channels_last)
    out = {}
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(False), False)
        network = model._forward(data['inputs'])
        out['cls_logits'] = network.cls_logits[-1]
        out['mask_logits'] = network.mask_logits[-1]
        results = model.predict(data['inputs'], data['data_samples'])
    out['panoptic'] = torch.stack([r.pred_panoptic_seg.sem_seg for r in results])
    out['semantic'] = torch.stack([r.pred_sem_seg.sem_seg for r in results]).to(torch.uint8)
    out['instance_scores'] = torch.cat([r.pred_instances.scores for r in results])
    out['instance_labels'] = torch.cat([r.pred_instances.labels for r in results])
    out['instance_masks'] = _pack(torch.cat([r.pred_instances.masks for r in results]))
    model.train()
    data = model.data_preprocessor(_batch(True), True)
    torch.manual_seed(2)
    losses = model.loss(data['inputs'], data['data_samples'])
    sum(losses.values()).backward()
    out['losses'] = {k: v.detach() for k, v in losses.items()}
    params = dict(model.named_parameters())
    out['grads'] = {k: params[k].grad.clone() for k in GRAD_KEYS}
    out['channels_last'] = channels_last
    return out


@pytest.fixture(scope='module', params=['nchw', 'channels_last', 'winograd'])
def outputs(request):
    """The NHWC layout (``channels_last=True``) must give the same results too, and so must
    Winograd's convolutions, taken here by every 3 x 3 one whatever its size and this CPU (the
    tiny model's are below the sizes where it pays), in inference and in training (its
    forward and input gradients)."""
    if request.param != 'winograd':
        return reference_outputs(channels_last=request.param == 'channels_last')
    calls, backward_calls = [], []
    original, trainable = winograd.winograd_conv3x3, winograd._TrainableWinogradConv3x3

    def counted(*args):
        calls.append(args[0].shape)
        return original(*args)

    class CountedTrainable(trainable):
        @staticmethod
        def backward(ctx, grad):
            backward_calls.append(grad.shape)
            return trainable.backward(ctx, grad)

    with pytest.MonkeyPatch.context() as patch:
        for flag in ('WINOGRAD_INFERENCE', 'WINOGRAD_TRAINING'):
            patch.setattr(winograd, flag, True)
        for limit in ('MIN_CHANNELS', 'MIN_PIXELS', 'MIN_TRAINING_CHANNELS',
                      'MIN_TRAINING_PIXELS'):
            patch.setattr(winograd, limit, 1)
        patch.setattr(winograd, 'winograd_conv3x3', counted)
        patch.setattr(winograd, '_TrainableWinogradConv3x3', CountedTrainable)
        out = reference_outputs(channels_last=True)
    assert calls and backward_calls
    return out


@pytest.fixture(scope='module')
def before():
    return torch.load(FIXTURE, weights_only=True)


def test_inference_logits_match_the_code_before_the_speedups(outputs, before):
    for name in ('cls_logits', 'mask_logits'):
        torch.testing.assert_close(outputs[name], before[name], rtol=1e-4, atol=1e-4)


def test_post_processed_results_match(outputs, before):
    assert torch.equal(outputs['panoptic'], before['panoptic'])
    assert torch.equal(outputs['semantic'], before['semantic'])
    assert torch.equal(outputs['instance_labels'], before['instance_labels'])
    assert torch.equal(outputs['instance_masks'], before['instance_masks'])
    torch.testing.assert_close(outputs['instance_scores'], before['instance_scores'],
                               rtol=1e-4, atol=1e-5)


def test_training_losses_and_gradients_match(outputs, before):
    assert outputs['losses'].keys() == before['losses'].keys()
    for name, value in before['losses'].items():
        torch.testing.assert_close(outputs['losses'][name], value, rtol=1e-4, atol=1e-5,
                                   msg=name)
    for name, value in before['grads'].items():
        if outputs['channels_last']:
            # NHWC convolutions round differently, and the criterion's choice of uncertain
            # points is discrete: a flipped point moves a few gradients by up to 0.2 % of
            # their tensor's largest (measured); a layout bug moves them by their own size.
            error = (outputs['grads'][name] - value).abs().max()
            assert error <= 5e-3 * value.abs().max(), (name, float(error))
            continue
        torch.testing.assert_close(outputs['grads'][name], value, rtol=1e-3, atol=1e-5,
                                   msg=name)


def test_a_built_model_runs_the_fast_layers_without_init_weights():
    """tools/test.py and the demo build a model and load a checkpoint without calling
    ``init_weights``: the speed-ups must not depend on it (nor on ``channels_last``)."""
    from mmcv.ops import MultiScaleDeformableAttention
    from mmdet.models.layers import MSDeformAttnPixelDecoder
    from torch import nn

    from openseg_core.models.layers import (FastMSDeformAttnPixelDecoder,
                                            FastMultiScaleDeformableAttention,
                                            FoldedBatchNorm2d, FoldedConv2d,
                                            FusedMultiheadAttention, OneDNNLinear)
    model = MODELS.build(Config.fromfile(resolve_config(CONFIG)).model)
    kinds = {type(m) for m in model.modules()}
    assert {FastMultiScaleDeformableAttention, FusedMultiheadAttention, OneDNNLinear,
            FastMSDeformAttnPixelDecoder, FoldedConv2d, FoldedBatchNorm2d} <= kinds
    assert not kinds & {MultiScaleDeformableAttention, nn.Linear, MSDeformAttnPixelDecoder,
                        nn.BatchNorm2d}

"""Contracts of the mask-classification family (Mask2Former-style: the reference model,
X-Decoder, ODISE's mask generator).

Data flow and shapes::

    backbone maps --PixelDecoder--> mask features (B, C, H/4, W/4) + memories
        [(B, C_m, H/32, W/32), (B, C_m, H/16, W/16), (B, C_m, H/8, W/8)] (low to high res)
    --QueryDecoder--> QueryDecoderOutput: per prediction (L + 1) query_embeds (B, Q, C),
        mask_logits (B, Q, H/4, W/4)
    --ClassificationHead(query_embeds, class_embeds (K, D))--> logits (B, Q, K + 1) for
        softmax heads ("no object" last), (B, Q, K) for sigmoid heads
    --Criterion(MaskClassificationOutput, targets [InstanceData(labels (G,), masks (G, H, W))])
        --> {'loss_cls', 'loss_mask', 'loss_dice', 'd{i}.loss_*'}, with a Matcher inside
    --PostProcessor.predict(cls (B, Q, K'), masks (B, Q, h, w), metas, vocabulary)
        --> per image {'pred_panoptic_seg', 'pred_sem_seg', 'pred_instances'}

The classification rule (``'softmax'`` with a "no object" column or ``'sigmoid'`` per
class) is an attribute ``classification`` of the head, the criterion (from its ``loss_cls``)
and the post-processor; a model checks that they agree.

``Matcher`` (generic, used by the detection family too)
    ``match(pred InstanceData(scores (Q, K'), masks (Q, h, w) and/or bboxes (Q, 4)),
    gt InstanceData(labels (G,), masks (G, H, W) and/or bboxes (G, 4)), img_meta)`` ->
    ``(query_idx (M,), gt_idx (M,))`` long tensors.
"""
import torch
from mmengine.structures import InstanceData

from ..base import Vocabulary
from ..interfaces import contract, expect, expect_finite, expect_shape


def _memories(batch, channels, size, levels=3):
    return [torch.randn(batch, channels, size // s, size // s)
            for s in (32, 16, 8)[:levels]]


@contract('mask_classification.PixelDecoder')
def check_pixel_decoder(part, in_channels=(16, 32, 64, 128), strides=(4, 8, 16, 32),
                        channels=None, size=64) -> None:
    """Backbone maps -> mask features ``(B, C, H/4, W/4)`` and memories, low to high res."""
    part.eval()
    feats = [torch.randn(2, c, size // s, size // s) for c, s in zip(in_channels, strides)]
    with torch.no_grad():
        out = part(feats)
    expect(isinstance(out, (tuple, list)) and len(out) == 2,
           'a pixel decoder returns (mask_features, memories)')
    mask_features, memories = out
    expect_shape(mask_features, (2, channels, size // 4, size // 4), 'mask_features')
    expect(len(memories) >= 1, 'at least one memory')
    sides = [m.shape[-1] for m in memories]
    expect(sides == sorted(sides), f'memories must go from low to high resolution, got {sides}')
    for memory in memories:
        expect_shape(memory, (2, None, None, None), 'memory')


@contract('mask_classification.QueryDecoder')
def check_query_decoder(part, channels=16, size=64) -> None:
    """``(mask_features, memories)`` -> a ``QueryDecoderOutput`` with ``num_layers + 1``
    predictions of ``(B, Q, C)`` embeddings and ``(B, Q, H/4, W/4)`` masks."""
    from .query_decoder import QueryDecoderOutput
    part.eval()
    mask_features = torch.randn(2, part.decoder.embed_dims, size // 4, size // 4)
    with torch.no_grad():
        out = part(mask_features, _memories(2, channels, size, part.num_feature_levels))
    expect(isinstance(out, QueryDecoderOutput),
           f'a query decoder returns a QueryDecoderOutput, got {type(out).__name__}')
    expected = len(part.decoder.layers) + 1
    expect(len(out.query_embeds) == len(out.mask_logits) == expected,
           f'{expected} predictions (the learned queries + one per layer), got '
           f'{len(out.query_embeds)} embeddings and {len(out.mask_logits)} masks')
    num_queries = out.query_embeds[0].shape[1]
    for embeds, masks in zip(out.query_embeds, out.mask_logits):
        expect_shape(embeds, (2, num_queries, part.decoder.embed_dims), 'query_embeds')
        expect_shape(masks, (2, num_queries, size // 4, size // 4), 'mask_logits')
        expect_finite(masks, 'mask_logits')


@contract('mask_classification.ClassificationHead')
def check_classification_head(part, channels=16, embed_dim=8) -> None:
    """``(B, Q, C)`` queries, ``(K, D)`` class embeddings -> ``(B, Q, K + 1)`` logits when
    the head appends "no object", else ``(B, Q, K)``; ``classification`` names the rule."""
    expect(part.classification in ('softmax', 'sigmoid'),
           f"classification must be 'softmax' or 'sigmoid', got {part.classification!r}")
    classes = torch.nn.functional.normalize(torch.randn(4, embed_dim), dim=-1)
    logits = part(torch.randn(2, 5, channels), classes)
    expect_shape(logits, (2, 5, 4 + int(part.appends_no_object)), 'logits')
    expect_finite(logits, 'logits')
    expect(logits.requires_grad, 'logits must be differentiable')


@contract('Matcher')
def check_matcher(part) -> None:
    """Matches each target to at most one query and each query to at most one target."""
    scores = torch.full((6, 4), -5.0)
    masks = torch.full((6, 16, 16), -10.0)
    gt_masks = torch.zeros(2, 32, 32)
    gt_masks[0, :16], gt_masks[1, 16:] = 1, 1
    # Query 4 is target 0's (class 2, top half); query 1 is target 1's (class 0).
    scores[4, 2], scores[1, 0] = 5.0, 5.0
    masks[4, :8], masks[1, 8:] = 10.0, 10.0
    query_idx, gt_idx = part.match(InstanceData(scores=scores, masks=masks),
                                   InstanceData(labels=torch.tensor([2, 0]), masks=gt_masks),
                                   dict(img_shape=(32, 32)))
    expect(query_idx.dtype == gt_idx.dtype == torch.long, 'indices must be long tensors')
    pairs = dict(zip(gt_idx.tolist(), query_idx.tolist()))
    expect(pairs == {0: 4, 1: 1}, f'the obvious assignment {{0: 4, 1: 1}}, got {pairs}')
    query_idx, gt_idx = part.match(InstanceData(scores=scores, masks=masks),
                                   InstanceData(labels=torch.zeros(0, dtype=torch.long),
                                                masks=torch.zeros(0, 32, 32)))
    expect(len(query_idx) == len(gt_idx) == 0, 'no targets, no matches')


@contract('mask_classification.Criterion')
def check_criterion(part) -> None:
    """Per-prediction logits + targets -> finite scalar ``loss_*`` (last prediction) and
    ``d{i}.loss_*`` (earlier ones) that back-propagate into the logits."""
    from .criterion import MaskClassificationOutput
    columns = 4 if part.classification == 'softmax' else 3
    cls_logits = [torch.randn(2, 5, columns, requires_grad=True) for _ in range(2)]
    mask_logits = [torch.randn(2, 5, 16, 16, requires_grad=True) for _ in range(2)]
    targets = [InstanceData(labels=torch.tensor([0, 2]), masks=torch.rand(2, 64, 64) > 0.5),
               InstanceData(labels=torch.zeros(0, dtype=torch.long),
                            masks=torch.zeros(0, 64, 64, dtype=torch.bool))]
    losses = part(MaskClassificationOutput(cls_logits, mask_logits), targets,
                  [dict(img_shape=(64, 64))] * 2)
    for name in ('loss_cls', 'loss_mask', 'loss_dice', 'd0.loss_cls', 'd0.loss_mask'):
        expect(name in losses, f'criterion returns no {name!r} (got {sorted(losses)})')
    for name, value in losses.items():
        expect_shape(value, (), name)
        expect_finite(value, name)
    sum(losses.values()).backward()
    expect(cls_logits[-1].grad is not None and mask_logits[-1].grad is not None,
           'the losses must reach the class and mask logits')


@contract('mask_classification.PostProcessor')
def check_postprocessor(part) -> None:
    """Logits + metas + vocabulary -> per image ``pred_panoptic_seg`` / ``pred_sem_seg``
    ``(1, H, W)`` and ``pred_instances`` at the original size, labels in the vocabulary."""
    vocabulary = Vocabulary(('circle', 'square'), ('sky',))
    columns = 4 if part.classification == 'softmax' else 3
    metas = [dict(batch_input_shape=(64, 64), img_shape=(60, 50), ori_shape=(120, 100))] * 2
    results = part.predict(torch.randn(2, 5, columns) * 3, torch.randn(2, 5, 16, 16) * 3,
                           metas, vocabulary)
    expect(len(results) == 2, 'one result per image')
    for result in results:
        for name in ('pred_panoptic_seg', 'pred_sem_seg'):
            expect(name in result, f'no {name}')
            expect_shape(result[name].sem_seg, (1, 120, 100), name)
        expect(int(result['pred_sem_seg'].sem_seg.max()) < 3, 'semantic labels in the vocabulary')
        instances = result['pred_instances']
        expect(bool((instances.labels < 2).all()), 'instances are things')
        expect(instances.masks.shape[-2:] == (120, 100), 'instance masks at the original size')


@contract('mask_classification.RegionEnsemble')
def check_region_ensemble(part) -> None:
    """Learned logits ``(B, Q, K + 1)`` + CLIP region and class embeddings -> ensembled
    logits ``(B, Q, K + 1)``: probabilities that sum to one, the learned "no object"
    probability kept, and queries without a region left as the learned classifier says."""
    vocabulary = Vocabulary(('circle', 'square'), ('sky',))
    cls_logits = torch.randn(2, 5, 4) * 3
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[1, 3] = False
    out = part(cls_logits, torch.randn(2, 5, 8), torch.nn.functional.normalize(
        torch.randn(3, 8), dim=-1), torch.tensor(4.6), valid, vocabulary)
    expect_shape(out, (2, 5, 4), 'ensembled logits')
    expect_finite(out, 'ensembled logits')
    probs, learned = out.exp(), cls_logits.softmax(-1)
    expect(torch.allclose(probs.sum(-1), torch.ones(2, 5), atol=1e-4),
           'the ensemble returns log-probabilities')
    expect(torch.allclose(probs[..., -1], learned[..., -1], atol=1e-4),
           'the learned "no object" probability is kept')
    expect(torch.allclose(probs[1, 3], learned[1, 3], atol=1e-4),
           'a query without a region keeps the learned probabilities')

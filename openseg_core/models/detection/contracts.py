"""Contracts of the query-based detection family (DETR-style with boxes: APE).

They fix the shapes a detection plugin's parts exchange so that the core's matchers, losses
and metrics serve them; the core implements the generic ones (``VisionLanguageAlign``,
``OneToManyAssigner``).

Data flow and shapes::

    backbone maps (strides 4..64) + prompt embeddings (K, D)
    --VisionLanguageEncoder--> fused multi-scale memory (B, sum_l H_l W_l, C) and updated
        prompt embeddings (K, D) (vocabulary prompts may pass unchanged)
    --two-stage proposals + QueryDecoder--> per layer query_embeds (B, Q, C),
        reference boxes (B, Q, 4) normalised cx, cy, w, h in [0, 1]
    --PromptClassifier(query_embeds, prompt_embeds)--> (B, Q, K) sigmoid logits
    --mask branch--> (B, Q, H/4, W/4) mask logits
    criterion: the core ``HungarianMatcher`` or ``OneToManyAssigner`` (Assigner) over
        InstanceData(scores, bboxes, masks) with mmdet's FocalLossCost / BBoxL1Cost /
        IoUCost, mmdet's FocalLoss / L1Loss / GIoULoss / DiceLoss
    predict: pred_instances (bboxes (N, 4) xyxy pixels, scores, labels, masks)
"""
import torch
from mmengine.structures import InstanceData

from ..interfaces import contract, expect, expect_finite, expect_shape


@contract('detection.PromptClassifier')
def check_prompt_classifier(part, channels=16, embed_dim=8) -> None:
    """``(B, Q, C)`` queries and ``(K, D)`` prompt embeddings -> ``(B, Q, K)`` sigmoid
    logits, for any ``K`` (thousands of prompts in one pass)."""
    for num_prompts in (1, 7):
        logits = part(torch.randn(2, 5, channels), torch.randn(num_prompts, embed_dim))
        expect_shape(logits, (2, 5, num_prompts), 'logits')
        expect_finite(logits, 'logits')


@contract('detection.Assigner')
def check_assigner(part) -> None:
    """``match(InstanceData(bboxes (Q, 4)), InstanceData(bboxes (G, 4)))`` -> ``(M,)`` query
    and ``(M,)`` target indices; a target may train several queries, the well-overlapping
    ones."""
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 11.], [50., 50., 60., 60.],
                          [20., 20., 30., 30.], [0., 1., 10., 10.]])
    targets = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]]),
                           labels=torch.tensor([0, 1]))
    query_idx, gt_idx = part.match(InstanceData(bboxes=boxes), targets)
    expect(query_idx.dtype == gt_idx.dtype == torch.long and query_idx.shape == gt_idx.shape,
           'indices must be two long tensors of one length')
    pairs = set(zip(query_idx.tolist(), gt_idx.tolist()))
    expect((0, 0) in pairs and (3, 1) in pairs, f'exact boxes must be assigned, got {pairs}')
    expect(all(q != 2 for q, _ in pairs), f'a box far from every target is assigned: {pairs}')
    query_idx, gt_idx = part.match(InstanceData(bboxes=boxes),
                                   InstanceData(bboxes=torch.zeros(0, 4),
                                                labels=torch.zeros(0, dtype=torch.long)))
    expect(len(query_idx) == len(gt_idx) == 0, 'no targets, no assignment')

"""Contracts of the query-based detection family (DETR-style with boxes: APE).

No part of the core implements them yet; they fix the shapes a detection plugin's parts
exchange so that the core's matcher, losses and metrics serve them.

Data flow and shapes::

    backbone maps (strides 4..64) + prompt embeddings (K, D)
    --VisionLanguageEncoder--> fused multi-scale memory (B, sum_l H_l W_l, C) and updated
        prompt embeddings (K, D) (vocabulary prompts may pass unchanged)
    --two-stage proposals + QueryDecoder--> per layer query_embeds (B, Q, C),
        reference boxes (B, Q, 4) normalised cx, cy, w, h in [0, 1]
    --PromptClassifier(query_embeds, prompt_embeds)--> (B, Q, K) sigmoid logits
    --mask branch--> (B, Q, H/4, W/4) mask logits
    criterion: the core ``HungarianMatcher`` (or a one-to-many assigner) over
        InstanceData(scores, bboxes, masks) with mmdet's FocalLossCost / BBoxL1Cost /
        IoUCost, mmdet's FocalLoss / L1Loss / GIoULoss / DiceLoss
    predict: pred_instances (bboxes (N, 4) xyxy pixels, scores, labels, masks)
"""
import torch

from ..interfaces import contract, expect_finite, expect_shape


@contract('detection.PromptClassifier')
def check_prompt_classifier(part, channels=16, embed_dim=8) -> None:
    """``(B, Q, C)`` queries and ``(K, D)`` prompt embeddings -> ``(B, Q, K)`` sigmoid
    logits, for any ``K`` (thousands of prompts in one pass)."""
    for num_prompts in (1, 7):
        logits = part(torch.randn(2, 5, channels), torch.randn(num_prompts, embed_dim))
        expect_shape(logits, (2, 5, num_prompts), 'logits')
        expect_finite(logits, 'logits')

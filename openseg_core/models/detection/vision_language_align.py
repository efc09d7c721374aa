"""GLIP-style vision-language alignment: sigmoid logits of queries against prompt embeddings."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.registry import MODELS

from ..interfaces import implements


@implements('detection.PromptClassifier', example=dict(embed_dims=16, prompt_dims=8),
            inputs=dict(channels=16, embed_dim=8))
@MODELS.register_module()
class VisionLanguageAlign(BaseModule):
    """GLIP's ``VisionLanguageAlign`` (APE's classifier): with ``P' = P / |P|``,

    ``logit = (O . W(P' / 2)^T) / exp(log_scale) + P' . b_lang + b0``

    for queries ``O (B, Q, C)`` and prompts ``P``: a learned projection of the normalised
    prompt into the query space, a learnable temperature and a per-prompt bias that depends on
    the prompt itself (``b_lang``, zero at first) plus the focal-loss prior ``b0``. Each
    prompt is scored independently, so ``K`` can be any size.

    The core's ``TextClassifierHead`` normalises the queries and has one shared bias; this
    one follows GLIP so that APE's official weights load and score alike.

    Args:
        embed_dims: query width ``C``.
        prompt_dims: prompt embedding width ``D``.
        prior_prob: initial probability of every prompt (``b0 = -log((1 - p) / p)``).
        log_scale: initial log temperature.
        clamp: logits are clamped to ``[-clamp, clamp]`` (fp16 range; ``None``: off).
    """

    def __init__(self, embed_dims: int, prompt_dims: int, prior_prob: float = 0.01,
                 log_scale: float = 0.0, clamp: Optional[float] = 50000.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.dot_product_projection_text = nn.Linear(prompt_dims, embed_dims)
        self.log_scale = nn.Parameter(torch.tensor([float(log_scale)]))
        self.bias_lang = nn.Parameter(torch.zeros(prompt_dims))
        self.bias0 = nn.Parameter(torch.tensor([-math.log((1 - prior_prob) / prior_prob)]))
        self.clamp = clamp

    def forward(self, queries: Tensor, prompts: Tensor) -> Tensor:
        """``(B, Q, C)`` queries and ``(K, D)`` (shared) or ``(B, K, D)`` (per image)
        prompts -> ``(B, Q, K)`` sigmoid logits."""
        prompts = F.normalize(prompts.to(queries.dtype), p=2, dim=-1)
        keys = self.dot_product_projection_text(prompts / 2.0)
        bias = prompts @ self.bias_lang + self.bias0  # (K,) or (B, K)
        logits = queries @ keys.transpose(-1, -2) / self.log_scale.exp()
        logits = logits + (bias[None, None] if bias.dim() == 1 else bias[:, None])
        if self.clamp is not None:
            logits = logits.clamp(-self.clamp, self.clamp)
        return logits

"""The tensor contracts between openseg's parts.

These are structural (``typing.Protocol``): mmdet's ``ResNet`` and ``MSDeformAttnPixelDecoder``
satisfy them as they are, and a plugin's part satisfies them by shape, not by inheritance.
``tests/test_models/test_contracts.py`` checks every registered implementation.

Shapes: ``B`` images, ``Q`` queries, ``C`` channels, ``K`` classes in the vocabulary,
``N`` texts, ``L`` tokens, ``D`` embedding width, ``P`` sampled points.
"""
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from torch import Tensor


@runtime_checkable
class Backbone(Protocol):
    """``(B, 3, H, W)`` images -> tuple of feature maps at strides ``(4, 8, 16, 32)``."""

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Strings -> token features ``(N, L, D_tok)``, pooled ``(N, D)``, mask ``(N, L)``."""

    token_embedding_table: Tensor  #: ``(V, D_tok)``, for caption logits

    def forward(self, texts: Sequence[str]) -> Dict[str, Tensor]:
        ...

    def encode_vocabulary(self, class_names: Sequence[str]) -> Tensor:
        """``(K, D)`` L2-normalised class embeddings, prompt-ensembled and cached."""
        ...


@runtime_checkable
class PixelDecoder(Protocol):
    """Backbone features -> mask features ``(B, C, H/4, W/4)`` and a list of memories
    ``[(B, C, H/32, W/32), (B, C, H/16, W/16), (B, C, H/8, W/8)]`` (low to high resolution)."""

    def forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        ...


@runtime_checkable
class QueryDecoder(Protocol):
    """Queries attend to the memories; every layer predicts masks from the mask features.

    ``forward(mask_features, memories, extra_queries=None, self_attn_mask=None)`` returns a
    dict with ``query_embeds``: list over layers (+1 for the input) of ``(B, Q, C)`` and
    ``mask_logits``: the same list of ``(B, Q_mask, H/4, W/4)``. ``self_attn_mask``
    ``(Q, Q)`` or ``(B * heads, Q, Q)``, True = blocked, is data: a task's attention rules
    are passed in, not coded into the decoder.
    """

    def forward(self, mask_features: Tensor, memories: List[Tensor],
                extra_queries: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None) -> Dict[str, List[Tensor]]:
        ...


@runtime_checkable
class Matcher(Protocol):
    """One image: class logits ``(Q, K+1)``, mask logits ``(Q, h, w)``, target labels ``(G,)``
    and masks ``(G, H, W)`` -> (query indices, target indices), each ``(M,)``."""

    def match(self, cls_logits: Tensor, mask_logits: Tensor, gt_labels: Tensor,
              gt_masks: Tensor) -> Tuple[Tensor, Tensor]:
        ...


@runtime_checkable
class Head(Protocol):
    """Query embeddings ``(B, Q, C)`` + class embeddings ``(K, D)`` -> logits ``(B, Q, K+1)``,
    the last column being "no object"."""

    def forward(self, query_embeds: Tensor, class_embeds: Tensor) -> Tensor:
        ...

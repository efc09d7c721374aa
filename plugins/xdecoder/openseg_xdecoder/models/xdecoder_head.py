"""X-Decoder's semantic outputs: concept classification, image embedding, caption logits."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ..registry import MODELS


@implements('mask_classification.ClassificationHead',
            example=dict(embed_dims=16, proj_dims=8, token_dims=8),
            inputs=dict(channels=16, embed_dim=8))
@MODELS.register_module()
class XDecoderHead(BaseModule):
    """Projects decoder outputs into the text encoder's spaces.

    Unlike the core's ``TextClassifierHead`` there is no learned "no object" vector: as in the
    paper, "background" is one more concept encoded by the text encoder, so the last column of
    :meth:`forward` is its similarity (softmax classification whose "no object" column the
    model supplies: ``appends_no_object`` is False). The projections are bare matrices, as in
    the official checkpoint (``class_embed``, ``caping_embed``), so its weights load unchanged.

    Args:
        embed_dims: decoder width ``C``.
        proj_dims: text embedding width ``D`` (the encoder's pooled output).
        token_dims: width ``W`` of the encoder's token-embedding table (caption logits).
        init_temperature: initial ``1 / logit_scale``; CLIP's 0.07.
        max_logit_scale: cap of the class and retrieval logit scale, as in CLIP; ``None``
            for none (the official generic classification). Referring logits are always
            capped at 100.
        backbone_dims: channels of the last backbone map; when given, its average is projected
            (``backbone_proj``) into the text space too and retrieval scores average the two
            embeddings' similarities (the official ``RETRIEVAL.ENSEMBLE``).
    """

    classification = 'softmax'
    appends_no_object = False

    def __init__(self, embed_dims: int, proj_dims: int, token_dims: int,
                 init_temperature: float = 0.07, max_logit_scale: Optional[float] = 100.0,
                 backbone_dims: Optional[int] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.class_embed = nn.Parameter(torch.empty(embed_dims, proj_dims))
        self.caption_embed = nn.Parameter(torch.empty(embed_dims, token_dims))
        nn.init.trunc_normal_(self.class_embed, std=0.02)
        nn.init.trunc_normal_(self.caption_embed, std=0.02)
        self.backbone_proj = None
        if backbone_dims:
            self.backbone_proj = nn.Parameter(torch.empty(backbone_dims, proj_dims))
            nn.init.trunc_normal_(self.backbone_proj, std=0.02)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log_scale = None if max_logit_scale is None else math.log(max_logit_scale)

    @property
    def scale(self) -> Tensor:
        """The class and retrieval logit scale, capped at ``max_logit_scale``."""
        if self.max_log_scale is None:
            return self.logit_scale.exp()
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    @property
    def phrase_scale(self) -> Tensor:
        """The referring logit scale, always capped at 100 (as the official grounding)."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def embed(self, queries: Tensor) -> Tensor:
        """``(..., C)`` decoder outputs -> ``(..., D)`` unit vectors in the text space."""
        return F.normalize(queries @ self.class_embed, dim=-1)

    def image_embed(self, global_embeds: Tensor, pooled: Tensor) -> Tensor:
        """Retrieval embedding ``(B, D)``, or ``(B, 2D)`` with the backbone ensemble: the two
        unit embeddings side by side over sqrt(2), so its dot product with
        :meth:`text_embed` is the mean of the two similarities."""
        image = self.embed(global_embeds)
        if self.backbone_proj is None:
            return image
        backbone = F.normalize(pooled @ self.backbone_proj, dim=-1)
        return torch.cat([image, backbone], dim=-1) / math.sqrt(2)

    def text_embed(self, text_embeds: Tensor) -> Tensor:
        """Unit text embeddings ``(N, D)`` matched to :meth:`image_embed`'s layout."""
        if self.backbone_proj is None:
            return text_embeds
        return torch.cat([text_embeds, text_embeds], dim=-1) / math.sqrt(2)

    def forward(self, object_embeds: Tensor, concept_embeds: Tensor) -> Tensor:
        """``(B, Q, C)`` queries and ``(K', D)`` unit concept embeddings (the model passes
        the vocabulary and "background" last) -> ``(B, Q, K')`` logits."""
        return self.scale * self.embed(object_embeds) @ concept_embeds.t()

    def phrase_logits(self, object_embeds: Tensor, phrase_embeds: Tensor) -> Tensor:
        """``(B, Q, C)`` queries and one unit phrase embedding per image ``(B, D)`` ->
        ``(B, Q)`` logits of each query being the phrase (referring)."""
        return self.phrase_scale * torch.einsum('bqd,bd->bq', self.embed(object_embeds),
                                         phrase_embeds)

    def similarity(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        """``(B_i, D)`` x ``(B_t, D)`` unit vectors -> ``(B_i, B_t)`` scaled logits."""
        return self.scale * image_embeds @ text_embeds.t()

    def caption_logits(self, text_embeds: Tensor, token_table: Tensor) -> Tensor:
        """``(B, n, C)`` text-query outputs and ``(V, W)`` token embeddings -> ``(B, n, V)``:
        the next-token logits tied to the text encoder's input embeddings."""
        return (text_embeds @ self.caption_embed) @ token_table.t()

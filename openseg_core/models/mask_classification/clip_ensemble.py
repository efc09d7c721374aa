"""The image side of open-vocabulary transfer: classify each predicted mask with CLIP too, and
combine with the learned classifier by a geometric ensemble (FC-CLIP, ODISE)."""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.registry import MODELS

from ..base import Vocabulary
from ..interfaces import implements


@implements('mask_classification.RegionEnsemble', example=dict(seen_classes=('circle',)))
@MODELS.register_module()
class CLIPRegionEnsemble(BaseModule):
    """``p(c | q) = p_learned(c | q)^(1 - a_c) * p_clip(c | q)^a_c``, renormalised over the
    classes, where ``a_c = alpha_seen`` for classes of the training vocabulary and
    ``alpha_unseen`` for the others; the learned classifier's "no object" probability is kept.

    The learned classifier fits the classes it was trained on and is unreliable beyond them;
    CLIP, pretrained on image-text pairs, recognises any class but segments nothing. Weighing
    CLIP more on unseen classes gets both. A query whose mask is empty at CLIP's resolution has
    no CLIP opinion and keeps the learned probabilities (FC-CLIP's "ensemble on valid masks").

    Defaults are FC-CLIP's (0.4 / 0.8); ODISE's official label model uses 0.3 / 0.7 and its
    caption model 0.35 / 0.65.

    Args:
        seen_classes: names of the training vocabulary.
        alpha_seen, alpha_unseen: CLIP's weight for seen and unseen classes.
        mask_threshold: a query's region for CLIP is where its mask logit exceeds this.
    """

    def __init__(self, seen_classes: Sequence[str] = (), alpha_seen: float = 0.4,
                 alpha_unseen: float = 0.8, mask_threshold: float = 0.0, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, alpha in (('alpha_seen', alpha_seen), ('alpha_unseen', alpha_unseen)):
            if not 0.0 <= alpha <= 1.0:
                raise ValueError(f'{name} must lie in [0, 1], got {alpha}')
        if isinstance(seen_classes, str):
            raise TypeError('seen_classes must be a sequence of class names, not a string')
        self.seen_classes = frozenset(seen_classes)
        self.alpha_seen, self.alpha_unseen = alpha_seen, alpha_unseen
        self.mask_threshold = mask_threshold

    def regions(self, mask_logits: Tensor, size: Sequence[int]) -> Tensor:
        """``(B, Q, H, W)`` mask logits -> ``(B, Q, h, w)`` binary regions at CLIP's feature
        size ``(h, w)``."""
        resized = F.interpolate(mask_logits, size=tuple(size), mode='bilinear',
                                align_corners=False)
        return (resized > self.mask_threshold).to(mask_logits.dtype)

    def alphas(self, vocabulary: Vocabulary, device=None) -> Tensor:
        """``(K,)`` CLIP's weight per class of ``vocabulary``."""
        return torch.tensor([self.alpha_seen if name in self.seen_classes else self.alpha_unseen
                             for name in vocabulary.names], device=device)

    def forward(self, cls_logits: Tensor, region_embeds: Tensor, class_embeds: Tensor,
                logit_scale: Tensor, valid: Tensor, vocabulary: Vocabulary) -> Tensor:
        """Ensemble a softmax classifier (last column "no object") with CLIP.

        Args:
            cls_logits: ``(B, Q, K + 1)`` the learned classifier's logits.
            region_embeds: ``(B, Q, D)`` CLIP image embeddings of the queries' regions.
            class_embeds: ``(K, D)`` CLIP text embeddings of the vocabulary (normalised).
            logit_scale: CLIP's log similarity scale (``exp`` is applied).
            valid: ``(B, Q)`` bool, False where a query's region is empty.
            vocabulary: the classes, for the seen/unseen weights.

        Returns:
            ``(B, Q, K + 1)`` logits (log-probabilities) of the ensemble.
        """
        clip_logits = logit_scale.exp() * F.normalize(region_embeds, dim=-1) @ \
            F.normalize(class_embeds, dim=-1).t()
        learned = cls_logits[..., :-1].softmax(-1)
        alpha = self.alphas(vocabulary, cls_logits.device) * valid[..., None]
        combined = torch.exp((1 - alpha) * learned.clamp_min(1e-8).log()
                             + alpha * clip_logits.log_softmax(-1))
        no_object = cls_logits.softmax(-1)[..., -1:]
        probs = torch.cat([combined / combined.sum(-1, keepdim=True) * (1 - no_object),
                           no_object], dim=-1)
        return probs.clamp_min(1e-8).log()

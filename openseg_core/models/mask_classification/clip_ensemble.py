"""The image side of open-vocabulary transfer: classify each predicted mask with CLIP too, and
combine with the learned classifier by a geometric ensemble (FC-CLIP, ODISE)."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures.mask import mask2bbox
from mmengine.model import BaseModule
from torch import Tensor

from openseg_core.registry import MODELS

from ..base import Vocabulary
from ..interfaces import implements

#: How CLIP sees a predicted mask (see :class:`CLIPRegionEnsemble`).
REGIONS = ('mask_pool', 'crop', 'masked_crop', 'mask_clip')


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

    How CLIP sees a query's region (``region``):

    - ``'mask_pool'``: the tower's last feature map pooled inside the mask (FC-CLIP pools
      ConvNeXt-CLIP features; here CLIP's attention pooling restricted to the mask, the
      convolutional form of ODISE's MaskCLIP). Needs a map fine enough for the objects.
    - ``'crop'``: the image cropped around the mask's box through the whole tower
      (ZegFormer); robust when the map is coarse (the small ``shapes`` CLIP: 4 x 4 cells on a
      128 px scene).
    - ``'masked_crop'``: the same with the pixels outside the mask set to the mean colour
      (OVSeg): a stuff region's box no longer shows the objects lying on it.
    - ``'mask_clip'``: a ViT CLIP's class token restricted to the mask's patches
      (:class:`~openseg_core.models.backbones.MaskCLIP`, ODISE's classifier); every query
      gets an embedding, an empty mask the class token's view of the image, as in ODISE.

    Args:
        seen_classes: names of the training vocabulary.
        alpha_seen, alpha_unseen: CLIP's weight for seen and unseen classes.
        region: one of :data:`REGIONS`.
        mask_threshold: a query's region is where its mask logit exceeds this.
        crop_scale: ``'crop'``: side of the square crop over the box's longer side.
    """

    def __init__(self, seen_classes: Sequence[str] = (), alpha_seen: float = 0.4,
                 alpha_unseen: float = 0.8, region: str = 'mask_pool',
                 mask_threshold: float = 0.0, crop_scale: float = 1.3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if region not in REGIONS:
            raise ValueError(f'region must be one of {REGIONS}, not {region!r}')
        self.region, self.crop_scale = region, crop_scale
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

    def embed(self, tower, images: Tensor, last_stage: Tensor,
              mask_logits: Tensor) -> Tuple[Tensor, Tensor]:
        """CLIP embeddings of the queries' regions.

        Args:
            tower: the CLIP image tower (``embed_regions`` / ``embed_boxes``, e.g.
                :class:`~openseg_core.models.backbones.OpenCLIPImageBackbone`; ``embed_masks``
                for ``'mask_clip'``, :class:`~openseg_core.models.backbones.MaskCLIP`).
            images: ``(B, 3, H, W)`` its input.
            last_stage: ``(B, C, h, w)`` its last feature map on ``images`` (``'mask_pool'``
                only; ``None`` otherwise).
            mask_logits: ``(B, Q, H', W')`` the queries' mask logits on the padded input.

        Returns:
            ``(B, Q, D)`` embeddings and ``(B, Q)`` bool, False where a region is empty.
        """
        if self.region == 'mask_clip':
            embeds = tower.embed_masks(images, mask_logits)
            return embeds, torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        if self.region == 'mask_pool':
            regions = self.regions(mask_logits, last_stage.shape[-2:])
            return tower.embed_regions(last_stage, regions), regions.flatten(2).any(-1)
        masks = mask_logits > self.mask_threshold
        batch, queries, height, width = masks.shape
        boxes = mask2bbox(masks.flatten(0, 1)).view(batch, queries, 4)
        boxes = boxes * boxes.new_tensor([images.shape[-1] / width, images.shape[-2] / height] * 2)
        pixel_masks = None
        if self.region == 'masked_crop':
            pixel_masks = F.interpolate(mask_logits, size=images.shape[-2:], mode='bilinear',
                                        align_corners=False) > self.mask_threshold
        return (tower.embed_boxes(images, boxes, self.crop_scale, pixel_masks),
                masks.flatten(2).any(-1))

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
        return self.combine(cls_logits, clip_logits, valid, vocabulary)

    def combine(self, cls_logits: Tensor, clip_logits: Tensor, valid: Tensor,
                vocabulary: Vocabulary) -> Tensor:
        """The geometric ensemble of the learned ``(B, Q, K + 1)`` logits and CLIP's
        ``(B, Q, K)`` logits (any scale: a softmax is taken), for callers that score regions
        their own way (e.g. several names per class); arguments as in :meth:`forward`."""
        learned = cls_logits[..., :-1].softmax(-1)
        alpha = self.alphas(vocabulary, cls_logits.device) * valid[..., None]
        combined = torch.exp((1 - alpha) * learned.clamp_min(1e-8).log()
                             + alpha * clip_logits.log_softmax(-1))
        no_object = cls_logits.softmax(-1)[..., -1:]
        probs = torch.cat([combined / combined.sum(-1, keepdim=True) * (1 - no_object),
                           no_object], dim=-1)
        return probs.clamp_min(1e-8).log()

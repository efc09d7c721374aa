"""Turns mask-classification outputs into panoptic, semantic and instance predictions."""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.model import BaseModule
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from openseg_core.registry import MODELS

from ..base import Vocabulary
from ..interfaces import implements
from .classifier_head import CLASSIFICATIONS
from .query_decoder import MASK_INTERPOLATIONS, resize_masks


def mask_boxes(mask_logits: Tensor) -> Tensor:
    """``(N, H, W)`` mask logits -> ``(N, 4)`` float ``x1, y1, x2, y2`` tight boxes around
    the positive logits, zeros for an empty mask: mmdet's ``mask2bbox(mask_logits > 0)``,
    from two max-reductions instead of a boolean copy and a Python loop over masks."""
    height, width = mask_logits.shape[-2:]
    in_column = mask_logits.amax(dim=1) > 0  # (N, W)
    in_row = mask_logits.amax(dim=2) > 0  # (N, H)
    # argmax returns the first maximal index: the first True.
    x1 = in_column.to(torch.uint8).argmax(1)
    x2 = width - in_column.flip(1).to(torch.uint8).argmax(1)
    y1 = in_row.to(torch.uint8).argmax(1)
    y2 = height - in_row.flip(1).to(torch.uint8).argmax(1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    return boxes * in_column.any(1, keepdim=True)


class MasksAtOutputSize:
    """An image's ``(Q, h, w)`` mask logits as ``(Q, H, W)`` logits at its output size, resized
    when indexed: ``masks[queries]`` resizes those queries' masks only (to the padded input
    size, cropped to the image, then to the original size when given), as resizing all of
    them and indexing would, value for value (every mask is resized on its own).

    Post-processing reads a few masks at a time (:func:`mask_statistics`), so the
    ``(Q, H, W)`` float tensor is never made unless a caller takes ``masks[:]``.
    """

    def __init__(self, logits: Tensor, input_shape, image_shape, output_shape=None,
                 interpolation: str = 'bilinear'):
        self.logits = logits
        self.input_shape = tuple(input_shape)
        self.image_shape = tuple(image_shape)
        output_shape = None if output_shape is None else tuple(output_shape)
        self.output_shape = None if output_shape == self.image_shape else output_shape
        self.interpolation = interpolation
        self.device, self.dtype = logits.device, logits.dtype

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.logits.shape[0],) + (self.output_shape or self.image_shape)

    def __getitem__(self, queries) -> Tensor:
        selected = self.logits[queries]
        if not len(selected):  # torch's resizing refuses empty inputs
            return selected.new_empty((0,) + self.shape[1:])
        masks = resize_masks(selected[None], self.input_shape, self.interpolation)
        masks = masks[..., :self.image_shape[0], :self.image_shape[1]]
        if self.output_shape is not None:
            masks = resize_masks(masks, self.output_shape, self.interpolation)
        return masks[0]


#: Masks per step of :func:`mask_statistics`: a few 512 x 512 masks' temporaries are reused
#: by the allocator and stay in cache; all of them at once are fresh pages (measured on 101
#: masks of 512 x 512, 2 CPU cores: 86 ms at once, 12 ms by 4).
MASK_CHUNK = 4


def mask_statistics(mask_logits: Tensor, queries: Tensor,
                    mask_probs: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """The selected queries' binary masks ``(N, H, W)`` (logit > 0), mean probability inside
    each mask ``(N,)`` (0 for an empty one) and tight boxes ``(N, 4)``, from the ``(Q, H, W)``
    logits (a tensor or :class:`MasksAtOutputSize`) and optionally their sigmoid, a few masks
    at a time."""
    height, width = mask_logits.shape[-2:]
    binary = torch.empty((len(queries), height, width), dtype=torch.bool,
                         device=mask_logits.device)
    mask_scores = torch.empty(len(queries), dtype=mask_logits.dtype, device=mask_logits.device)
    boxes = torch.empty(len(queries), 4, dtype=mask_logits.dtype, device=mask_logits.device)
    for start in range(0, len(queries), MASK_CHUNK):
        part = slice(start, start + MASK_CHUNK)
        masks = mask_logits[queries[part]]
        boxes[part] = mask_boxes(masks)
        positive = torch.gt(masks, 0, out=binary[part]).flatten(1)
        area = positive.sum(1, dtype=torch.int32)
        if mask_probs is None:
            # sigmoid > 1/2 exactly where the logit is > 0: the probabilities inside a mask
            # sum to sum(relu(sigmoid - 1/2)) + area / 2, in place on the copy.
            inside = masks.sigmoid_().sub_(0.5).clamp_min_(0).flatten(1).sum(1) + 0.5 * area
        else:
            inside = (mask_probs[queries[part]].flatten(1) * positive).sum(1)
        mask_scores[part] = inside / (area + 1e-6)
    return binary, mask_scores, boxes


@implements('mask_classification.PostProcessor', example=dict())
@implements('mask_classification.PostProcessor', example=dict(classification='sigmoid'))
@MODELS.register_module()
class MaskPostProcessor(BaseModule):
    """Panoptic, semantic and instance outputs of a mask classifier, for any vocabulary.

    The panoptic and instance rules are mmdet's ``MaskFormerFusionHead`` (identical results
    for softmax logits); openseg has its own because mmdet's hard-codes softmax with a "no
    object" column and fixes the thing/stuff split at construction, has no semantic output,
    and an open-vocabulary model gets its vocabulary per call.

    With ``classification='softmax'`` the last logit column is "no object" and a query's
    class is its softmax argmax; with ``'sigmoid'`` each class has its own probability and a
    query's class is the most probable one (no "no object" column; ``object_mask_thr`` alone
    drops queries).

    Args:
        panoptic_on, semantic_on, instance_on: which outputs to produce.
        object_mask_thr, iou_thr, max_per_image, filter_low_score: mmdet's ``test_cfg`` keys.
        classification: ``'softmax'`` or ``'sigmoid'``, as the model's head.
        mask_interpolation: how mask logits are resized to the input and original sizes,
            ``'bilinear'`` or ``'bicubic_antialias'`` (X-Decoder's official code).
    """

    def __init__(self, panoptic_on: bool = True, semantic_on: bool = True,
                 instance_on: bool = True, object_mask_thr: float = 0.8,
                 iou_thr: float = 0.8, max_per_image: int = 100,
                 filter_low_score: bool = True, classification: str = 'softmax',
                 mask_interpolation: str = 'bilinear', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if classification not in CLASSIFICATIONS:
            raise ValueError(f'classification must be one of {CLASSIFICATIONS}, '
                             f'not {classification!r}')
        self.panoptic_on, self.semantic_on, self.instance_on = (panoptic_on, semantic_on,
                                                                instance_on)
        self.object_mask_thr = object_mask_thr
        self.iou_thr = iou_thr
        self.max_per_image = max_per_image
        self.filter_low_score = filter_low_score
        self.classification = classification
        if mask_interpolation not in MASK_INTERPOLATIONS:
            raise ValueError(f'mask_interpolation must be one of {MASK_INTERPOLATIONS}, '
                             f'not {mask_interpolation!r}')
        self.mask_interpolation = mask_interpolation

    def class_probs(self, cls_logits: Tensor) -> Tensor:
        """``(Q, K')`` logits -> ``(Q, K)`` class probabilities (no "no object")."""
        if self.classification == 'softmax':
            return F.softmax(cls_logits, dim=-1)[:, :-1]
        return cls_logits.sigmoid()

    def query_classes(self, cls_logits: Tensor) -> Tuple[Tensor, Tensor]:
        """``(Q, K')`` logits -> per query ``(score, label)``, label ``K`` = no object."""
        if self.classification == 'softmax':
            return F.softmax(cls_logits, dim=-1).max(-1)
        return cls_logits.sigmoid().max(-1)

    def panoptic(self, cls_logits: Tensor, mask_logits: Tensor, vocabulary: Vocabulary,
                 mask_probs: Optional[Tensor] = None) -> PixelData:
        """``(Q, K')`` and ``(Q, H, W)`` -> ``(1, H, W)`` ids ``label + instance *
        INSTANCE_OFFSET`` (``K`` where nothing is kept). The masks: a tensor or
        :class:`MasksAtOutputSize`; ``mask_probs``: their sigmoid, when the caller has it."""
        num_classes = len(vocabulary)
        scores, labels = self.query_classes(cls_logits)
        keep = labels.ne(num_classes) & (scores > self.object_mask_thr)
        cur_scores, cur_classes = scores[keep], labels[keep]
        # Only the kept queries' masks are needed, and usually few are kept.
        cur_masks = mask_logits[keep].sigmoid() if mask_probs is None else mask_probs[keep]
        panoptic = torch.full(mask_logits.shape[-2:], num_classes, dtype=torch.int32,
                              device=mask_logits.device)
        if not cur_masks.shape[0]:
            return PixelData(sem_seg=panoptic[None])
        # mmdet's per-query loop, all queries at once: each pixel goes to the query of highest
        # score x mask; a query keeps its pixels if they are at least iou_thr of its own mask.
        owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
        area = torch.bincount(owner.flatten(), minlength=len(cur_classes))
        original_area = (cur_masks >= 0.5).flatten(1).sum(1)
        # In float64, as mmdet's Python division.
        kept = (area > 0) & (original_area > 0) & (
            area.double() / original_area.clamp(min=1).double() >= self.iou_thr)
        is_thing = cur_classes < vocabulary.num_things
        # Things get instance ids 1, 2, ... in query order; stuff regions of one class merge
        # and share instance id 0.
        instance_id = (kept & is_thing).cumsum(0)
        ids = torch.where(is_thing, cur_classes + instance_id * INSTANCE_OFFSET, cur_classes)
        painted = kept[owner]
        if self.filter_low_score:
            painted &= cur_masks.gather(0, owner[None])[0] >= 0.5
        panoptic = torch.where(painted, ids[owner].to(torch.int32), panoptic)
        return PixelData(sem_seg=panoptic[None])

    def semantic(self, cls_logits: Tensor, mask_logits: Tensor,
                 mask_probs: Optional[Tensor] = None) -> PixelData:
        """``(Q, K')`` and ``(Q, H, W)`` -> ``(1, H, W)`` class map: the argmax over classes
        of ``sum_q p(class | q) * mask_q``."""
        masks = mask_logits.sigmoid() if mask_probs is None else mask_probs
        probs = torch.einsum('qk,qhw->khw', self.class_probs(cls_logits), masks)
        return PixelData(sem_seg=probs.argmax(0, keepdim=True))

    def instance(self, cls_logits: Tensor, mask_logits: Tensor, vocabulary: Vocabulary,
                 mask_probs: Optional[Tensor] = None) -> InstanceData:
        """The ``max_per_image`` best (query, thing class) pairs: ``masks (N, H, W)`` bool,
        ``bboxes (N, 4)``, ``labels (N,)``, ``scores (N,)`` = class probability x mean mask
        probability inside the mask. The masks: a tensor or :class:`MasksAtOutputSize`;
        ``mask_probs``: their sigmoid, when the caller has it."""
        probs = self.class_probs(cls_logits)
        num_queries, num_classes = probs.shape
        labels = torch.arange(num_classes, device=probs.device).repeat(num_queries)
        # Fewer (query, class) pairs than max_per_image with a small vocabulary.
        scores, top = probs.flatten().topk(min(self.max_per_image, probs.numel()),
                                           sorted=False)
        labels = labels[top]
        is_thing = labels < vocabulary.num_things
        scores, labels, top = scores[is_thing], labels[is_thing], top[is_thing]
        # A query is often paired with several classes: its mask, score and box once.
        queries, pair_query = torch.unique(top // num_classes, return_inverse=True)
        binary, mask_scores, boxes = mask_statistics(mask_logits, queries, mask_probs)
        return InstanceData(bboxes=boxes[pair_query], labels=labels,
                            scores=scores * mask_scores[pair_query], masks=binary[pair_query])

    def predict(self, cls_logits: Tensor, mask_logits: Tensor, batch_img_metas: List[dict],
                vocabulary: Vocabulary, rescale: bool = True) -> List[dict]:
        """Post-process a batch.

        Args:
            cls_logits: ``(B, Q, K')`` logits (``K' = K + 1`` for softmax).
            mask_logits: ``(B, Q, h, w)`` logits at any resolution of the padded batch
                (upsampled to ``batch_input_shape``, as needed: :class:`MasksAtOutputSize`).
            batch_img_metas: with ``batch_input_shape``, ``img_shape`` (and ``ori_shape``
                when ``rescale``).
            vocabulary: the classes of the logits, things first.

        Returns:
            per image, a dict of the enabled ``pred_panoptic_seg`` / ``pred_sem_seg``
            (``PixelData``) and ``pred_instances`` (``InstanceData``), at the original size
            when ``rescale``.
        """
        expected = len(vocabulary) + (self.classification == 'softmax')
        if cls_logits.shape[-1] != expected:
            raise ValueError(f'{cls_logits.shape[-1]} class logits for a vocabulary of '
                             f'{len(vocabulary)} with {self.classification} classification '
                             f'(expected {expected})')
        results = []
        for cls_l, mask_l, meta in zip(cls_logits, mask_logits, batch_img_metas):
            mask_l = MasksAtOutputSize(mask_l, meta['batch_input_shape'], meta['img_shape'][:2],
                                       meta['ori_shape'][:2] if rescale else None,
                                       self.mask_interpolation)
            probs = None
            if self.semantic_on:
                # The semantic map sums over every mask; the panoptic and instance outputs
                # read the masks they need, a few at a time.
                mask_l = mask_l[:]
                probs = mask_l.sigmoid()
            result = {}
            if self.panoptic_on:
                result['pred_panoptic_seg'] = self.panoptic(cls_l, mask_l, vocabulary, probs)
            if self.semantic_on:
                result['pred_sem_seg'] = self.semantic(cls_l, mask_l, probs)
            if self.instance_on:
                result['pred_instances'] = self.instance(cls_l, mask_l, vocabulary, probs)
            results.append(result)
        return results

"""APE's inference rules: class-wise NMS top-k detections, the thing-stuff-equalized semantic
map (streamed over classes) and the official panoptic merge."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData, PixelData
from torch import Tensor
from torchvision.ops import batched_nms

from openseg_core.models.base import Vocabulary


def topk_after_nms(scores: Tensor, boxes: Tensor, topk: int, nms_thr: float,
                   score_thr: float = 0.0) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``topk`` best (query, class) pairs after class-wise NMS, as detectron2's
    ``fast_rcnn_inference`` with one box per query selects them.

    detectron2 suppresses among all ``Q x K`` pairs above ``score_thr``; with ``K`` = 10,000
    prompts that is millions of boxes. NMS only lets a pair be suppressed by a better one of
    its class, so the survivors among the ``n`` best pairs are exactly the survivors of the
    full NMS that rank among them: NMS runs on the ``n`` best (``n`` doubling from ``4 *
    topk`` until ``topk`` survive or no pair is left out), with the same result.

    Args:
        scores: ``(Q, K)`` probabilities.
        boxes: ``(Q, 4)`` xyxy.

    Returns:
        ``(M,)`` query indices, class indices and scores, best first, ``M <= topk``.
    """
    flat = scores.flatten()
    valid = int((flat > score_thr).sum())
    num_classes = scores.shape[1]
    count = min(valid, 4 * topk)
    while True:
        top_scores, top = flat.topk(count)
        queries, classes = top // num_classes, top % num_classes
        keep = batched_nms(boxes[queries].float(), top_scores.float(), classes, nms_thr)
        if len(keep) >= topk or count >= valid:
            keep = keep[:topk]
            return queries[keep], classes[keep], top_scores[keep]
        count = min(valid, 2 * count)


def semantic_probabilities(cls_logits: Tensor, temperature: float) -> Tensor:
    """APE's class weights of each query for the semantic map: ``S = softmax_c(sigmoid(
    logits) / T)`` (``(R, C)``)."""
    return F.softmax(cls_logits.sigmoid() / temperature, dim=-1)


def semantic_map(probs: Tensor, masks: Tensor, chunk: Optional[int] = 1000,
                 size: Optional[Tuple[int, int]] = None) -> Tuple[Tensor, Tensor]:
    """The per-pixel argmax and maximum of ``M_hat[c] = sum_i S[i, c] * M[i]``.

    Args:
        probs: ``(R, C)`` ``S``.
        masks: ``(R, h, w)`` mask probabilities ``M``.
        chunk: classes per step; ``None`` materialises the ``(C, H, W)`` map at once.
            Streaming keeps ``chunk x H x W`` values: 10,000 classes at 1024 x 1024 would be
            40 GB dense.
        size: ``(H, W)`` to resize ``M_hat`` to (bilinearly) before the argmax, as APE resizes
            its class map to the original image; ``None`` keeps ``(h, w)``. Resizing the
            mask logits instead would differ: the sigmoid and the resize do not commute.

    Returns:
        ``(H, W)`` labels and ``(H, W)`` values of the winning class.
    """
    flat = masks.flatten(1)
    out_size = tuple(size) if size is not None else tuple(masks.shape[1:])

    def class_maps(columns: Tensor) -> Tensor:  # (c, H * W)
        maps = columns.t() @ flat
        if out_size != tuple(masks.shape[1:]):
            maps = F.interpolate(maps.view(1, -1, *masks.shape[1:]), size=out_size,
                                 mode='bilinear', align_corners=False)[0].flatten(1)
        return maps

    if chunk is None:
        best, labels = class_maps(probs).max(0)
        return labels.view(out_size), best.view(out_size)
    pixels = out_size[0] * out_size[1]
    best = flat.new_full((pixels,), float('-inf'))
    labels = torch.zeros(pixels, dtype=torch.long, device=flat.device)
    for start in range(0, probs.shape[1], chunk):
        values, index = class_maps(probs[:, start:start + chunk]).max(0)
        better = values > best  # ties keep the lower class, as a dense argmax does
        best = torch.where(better, values, best)
        labels = torch.where(better, index + start, labels)
    return labels.view(out_size), best.view(out_size)


class APEPostProcessor:
    """APE's test-time rules over one forward pass's :class:`~.ape.APEOutput`.

    Args:
        topk: detections kept per image after class-wise NMS (APE: 100; APE-D: 300); the
            semantic and panoptic outputs use the same queries.
        nms_thr: class-wise NMS IoU (0.7).
        score_thr: lowest pair score considered (0.0).
        mask_thr: mask probability threshold of instance masks (0.5).
        instance_on, semantic_on, panoptic_on: outputs of vocabulary samples.
        semantic_temperature: ``T`` of :func:`semantic_probabilities` (0.06).
        semantic_chunk: classes per step of :func:`semantic_map` (``None``: dense).
        panoptic_prob, panoptic_temperature, object_mask_thr, overlap_thr: the official
            panoptic merge (0.1, 0.06, 0.01, 0.4).
        crop_masks_to_boxes: instance masks are zero outside their box, as the official
            masks pasted into their boxes are.
    """

    def __init__(self, topk: int = 100, nms_thr: float = 0.7, score_thr: float = 0.0,
                 mask_thr: float = 0.5, instance_on: bool = True, semantic_on: bool = True,
                 panoptic_on: bool = True, semantic_temperature: float = 0.06,
                 semantic_chunk: Optional[int] = 1000, panoptic_prob: float = 0.1,
                 panoptic_temperature: float = 0.06, object_mask_thr: float = 0.01,
                 overlap_thr: float = 0.4, crop_masks_to_boxes: bool = True):
        self.topk, self.nms_thr, self.score_thr = topk, nms_thr, score_thr
        self.mask_thr = mask_thr
        self.instance_on, self.semantic_on, self.panoptic_on = (instance_on, semantic_on,
                                                                panoptic_on)
        self.semantic_temperature, self.semantic_chunk = semantic_temperature, semantic_chunk
        self.panoptic_prob, self.panoptic_temperature = panoptic_prob, panoptic_temperature
        self.object_mask_thr, self.overlap_thr = object_mask_thr, overlap_thr
        self.crop_masks_to_boxes = crop_masks_to_boxes

    # ---------------------------------------------------------------- geometry
    @staticmethod
    def _boxes(out, image: int, meta: dict, rescale: bool) -> Tensor:
        """``(Q, 4)`` xyxy pixels of the original image (or the resized input)."""
        height, width = (meta['ori_shape'] if rescale else meta['img_shape'])[:2]
        boxes = bbox_cxcywh_to_xyxy(out.boxes[-1][image])
        boxes = boxes * boxes.new_tensor([width, height, width, height])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        return boxes

    @staticmethod
    def _input_mask_logits(out, image: int, queries: Tensor, meta: dict) -> Tensor:
        """``(R, h, w)`` mask logits of ``queries`` at the input image's size: upsampled to
        the padded input, cropped to the image."""
        logits = F.interpolate(out.mask_logits[image, queries][None],
                               size=tuple(meta['batch_input_shape']), mode='bilinear',
                               align_corners=False)
        height, width = meta['img_shape'][:2]
        return logits[0, :, :height, :width]

    @staticmethod
    def _to_original(logits: Tensor, meta: dict, rescale: bool) -> Tensor:
        """``(R, h, w)`` maps at the input's size -> ``(R, H, W)`` at the original size."""
        if rescale and tuple(meta['ori_shape'][:2]) != tuple(logits.shape[-2:]):
            logits = F.interpolate(logits[None], size=tuple(meta['ori_shape'][:2]),
                                   mode='bilinear', align_corners=False)[0]
        return logits

    def _mask_logits(self, out, image: int, queries: Tensor, meta: dict,
                     rescale: bool) -> Tensor:
        """``(R, H, W)`` mask logits of ``queries`` at the original image size."""
        return self._to_original(self._input_mask_logits(out, image, queries, meta), meta,
                                 rescale)

    # ---------------------------------------------------------------- outputs
    def _detections(self, out, image: int, columns: Tensor, meta: dict, rescale: bool,
                    topk: Optional[int] = None):
        scores = out.cls_logits[-1][image][:, columns].sigmoid()
        boxes = self._boxes(out, image, meta, rescale)
        queries, classes, scores = topk_after_nms(scores, boxes, topk or self.topk,
                                                  self.nms_thr, self.score_thr)
        return queries, classes, scores, boxes[queries]

    def instances(self, out, image: int, columns: Tensor, meta: dict, rescale: bool = True,
                  topk: Optional[int] = None) -> InstanceData:
        """Detections over ``columns`` of the logits: ``bboxes``, ``scores``, ``labels``
        (positions in ``columns``), ``masks (N, H, W)`` bool; ``topk`` overrides the
        configured number."""
        queries, labels, scores, boxes = self._detections(out, image, columns, meta, rescale,
                                                          topk)
        masks = self._mask_logits(out, image, queries, meta, rescale).sigmoid() > self.mask_thr
        if self.crop_masks_to_boxes and len(boxes):
            ys = torch.arange(masks.shape[1], device=masks.device)[None, :, None] + 0.5
            xs = torch.arange(masks.shape[2], device=masks.device)[None, None, :] + 0.5
            b = boxes[:, :, None, None]
            masks &= (xs >= b[:, 0]) & (xs <= b[:, 2]) & (ys >= b[:, 1]) & (ys <= b[:, 3])
        return InstanceData(bboxes=boxes, scores=scores, labels=labels, masks=masks)

    def referring(self, out, image: int, column: int, meta: dict,
                  rescale: bool = True) -> InstanceData:
        """The expression's best query (APE tests expressions with top-1)."""
        columns = torch.tensor([column], device=out.boxes[-1].device)
        return self.instances(out, image, columns, meta, rescale, topk=1)

    def semantic(self, out, image: int, queries: Tensor, mask_logits: Tensor,
                 num_classes: int, meta: dict, rescale: bool) -> PixelData:
        """``M_hat = sum_i S[i] M[i]`` over the selected queries (a query selected for two
        classes counts twice, as officially), argmax per pixel. ``mask_logits``: theirs at
        the input's size (:meth:`_input_mask_logits`)."""
        probs = semantic_probabilities(out.cls_logits[-1][image, queries, :num_classes],
                                       self.semantic_temperature)
        # Summed at the input's size, then the class map resized, as APE's sem_seg_postprocess.
        labels, _ = semantic_map(probs, mask_logits.sigmoid(), self.semantic_chunk,
                                 self._size(meta, rescale))
        return PixelData(sem_seg=labels[None])

    def panoptic(self, out, image: int, queries: Tensor, mask_logits: Tensor,
                 vocabulary: Vocabulary, meta: dict, rescale: bool) -> PixelData:
        """APE's panoptic merge (Mask2Former's, on sigmoid scores with a softmax over classes
        at ``panoptic_temperature``); thing ids decide which segments are instances. Ids
        ``label + instance * INSTANCE_OFFSET``, stuff instance 0, ``K`` where nothing won.
        ``mask_logits``: the queries' at the input's size."""
        logits = out.cls_logits[-1][image, queries, :len(vocabulary)]
        masks = self._to_original(mask_logits, meta, rescale).sigmoid()
        probs = logits.sigmoid()
        keep = probs.max(-1)[0] > self.object_mask_thr
        scores, labels = F.softmax(probs / self.panoptic_temperature, dim=-1).max(-1)
        scores, labels, masks = scores[keep], labels[keep], masks[keep]
        panoptic = torch.full(masks.shape[-2:], len(vocabulary), dtype=torch.int32,
                              device=masks.device)
        if len(masks):
            owner = (scores[:, None, None] * masks).argmax(0)
            instance = 1
            for k, label in enumerate(labels.tolist()):
                area = int((owner == k).sum())
                region = (owner == k) & (masks[k] >= self.panoptic_prob)
                original = int((masks[k] >= self.panoptic_prob).sum())
                if area == 0 or original == 0 or not bool(region.any()):
                    continue
                if area / original < self.overlap_thr:
                    continue
                if vocabulary.is_thing(label):
                    panoptic[region] = label + instance * INSTANCE_OFFSET
                    instance += 1
                else:
                    # Regions of one stuff class form one segment (instance 0).
                    panoptic[region] = label
        return PixelData(sem_seg=panoptic[None])

    def vocabulary(self, out, image: int, vocabulary: Vocabulary, meta: dict,
                   rescale: bool = True) -> dict:
        """The enabled outputs of a sample scored against the vocabulary (its first
        ``len(vocabulary)`` columns)."""
        result = {}
        device = out.boxes[-1].device
        if self.instance_on:
            things = torch.arange(vocabulary.num_things, device=device)
            if len(things):
                result['pred_instances'] = self.instances(out, image, things, meta, rescale)
            else:
                result['pred_instances'] = InstanceData(
                    bboxes=torch.zeros(0, 4, device=device), scores=torch.zeros(0, device=device),
                    labels=torch.zeros(0, dtype=torch.long, device=device),
                    masks=torch.zeros((0, *self._size(meta, rescale)), dtype=torch.bool,
                                      device=device))
        if self.semantic_on or self.panoptic_on:
            every = torch.arange(len(vocabulary), device=device)
            queries = self._detections(out, image, every, meta, rescale)[0]
            # Upsampled once for both outputs.
            mask_logits = self._input_mask_logits(out, image, queries, meta)
            if self.semantic_on:
                result['pred_sem_seg'] = self.semantic(out, image, queries, mask_logits,
                                                       len(vocabulary), meta, rescale)
            if self.panoptic_on:
                result['pred_panoptic_seg'] = self.panoptic(out, image, queries, mask_logits,
                                                            vocabulary, meta, rescale)
        return result

    @staticmethod
    def _size(meta: dict, rescale: bool) -> tuple:
        return tuple((meta['ori_shape'] if rescale else meta['img_shape'])[:2])

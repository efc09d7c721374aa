"""APE's data transforms: thing-stuff equalization and image-centric grounding samples."""
from typing import List

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from torchvision.ops import batched_nms

from ..registry import TRANSFORMS


def split_stuff_region(region: np.ndarray, min_area: int = 64) -> List[np.ndarray]:
    """Split one class's ``(H, W)`` bool mask into regions, as APE's panoptic mapper does.

    Each external contour (``cv2.RETR_EXTERNAL``: a hole belongs to its outer region, and is
    filled) with at least 3 points becomes a polygon (OpenCV's integer vertices + 0.5, the
    pixel centres), rasterised like COCO polygons (pycocotools, through mmdet's
    ``PolygonMasks``); regions of ``min_area`` pixels or fewer are dropped.

    Returns:
        the kept regions, ``(H, W)`` bool each.
    """
    height, width = region.shape
    contours = cv2.findContours(np.ascontiguousarray(region, dtype=np.uint8),
                                cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
    polygons = [c.reshape(-1).astype(np.float64) + 0.5 for c in contours if len(c) >= 3]
    if not polygons:
        return []
    masks = PolygonMasks([[p] for p in polygons], height, width).to_ndarray().astype(bool)
    return [m for m in masks if int(m.sum()) > min_area]


@TRANSFORMS.register_module()
class StuffToInstances(BaseTransform):
    """APE's thing-stuff equalization: every stuff region becomes an instance.

    Stuff is what the semantic map labels outside the thing masks (mmdet's
    ``LoadPanopticAnnotations`` writes both into ``gt_seg_map``). Each stuff class's pixels
    are split by :func:`split_stuff_region` and each region is appended to the instances
    (mask, box from the mask, label = its class), so stuff trains with the object-level
    losses and the model needs no thing/stuff split.

    Required keys: ``gt_seg_map``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_masks``,
    ``gt_ignore_flags``. Modified: the four instance keys.

    Args:
        min_area: regions of this many pixels or fewer are dropped (APE: 64, i.e. 8 x 8).
        ignore_index: the semantic map's void label.
    """

    def __init__(self, min_area: int = 64, ignore_index: int = 255):
        self.min_area = min_area
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results['gt_seg_map'].copy()
        height, width = seg.shape
        masks = results['gt_masks']
        if len(masks):
            seg[masks.to_ndarray().any(0)] = self.ignore_index
        new_masks, new_labels = [], []
        for label in np.unique(seg):
            if label == self.ignore_index:
                continue
            for region in split_stuff_region(seg == label, self.min_area):
                new_masks.append(region)
                new_labels.append(int(label))
        if not new_masks:
            return results
        stuff = BitmapMasks(np.stack(new_masks).astype(np.uint8), height, width)
        results['gt_masks'] = BitmapMasks(
            np.concatenate([masks.to_ndarray().astype(np.uint8), stuff.masks]), height, width)
        boxes = results['gt_bboxes']
        stuff_boxes = stuff.get_bboxes(dst_type='hbox')
        results['gt_bboxes'] = (boxes.cat([boxes, stuff_boxes]) if isinstance(
            boxes, HorizontalBoxes) else np.concatenate([boxes, stuff_boxes.numpy()]))
        results['gt_bboxes_labels'] = np.concatenate(
            [results['gt_bboxes_labels'], np.array(new_labels, dtype=np.int64)])
        results['gt_ignore_flags'] = np.concatenate(
            [results['gt_ignore_flags'], np.zeros(len(new_labels), dtype=bool)])
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(min_area={self.min_area})'


@TRANSFORMS.register_module()
class SampleGroundingPhrases(BaseTransform):
    """APE's image-centric grounding sample: one phrase per object, up to ``max_phrases``.

    An image's phrases often describe one object several times; non-maximum suppression of
    their boxes at ``nms_thr`` with random scores keeps one of them at random (a phrase whose
    box overlaps a kept one that much is dropped), then at most ``max_phrases`` stay. The
    kept phrases are ``results['phrases']`` and each instance's label is its phrase's index.

    Required keys: ``phrases`` (one per instance), ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags`` (and ``gt_masks`` if loaded).

    Args:
        nms_thr: IoU above which phrases count as the same object (APE: 0.6); 0 keeps all, in
            random order.
        max_phrases: most phrases per sample (APE: 128).
    """

    def __init__(self, nms_thr: float = 0.6, max_phrases: int = 128):
        self.nms_thr = nms_thr
        self.max_phrases = max_phrases

    def transform(self, results: dict) -> dict:
        boxes = results['gt_bboxes']
        boxes = boxes.tensor if isinstance(boxes, HorizontalBoxes) else torch.as_tensor(boxes)
        count = len(boxes)
        if self.nms_thr > 0:
            keep = batched_nms(boxes.float(), torch.rand(count), torch.zeros(count),
                               self.nms_thr)
        else:
            keep = torch.randperm(count)
        keep = keep[:self.max_phrases].numpy()
        results['phrases'] = [results['phrases'][i] for i in keep]
        for key in ('gt_bboxes', 'gt_masks', 'gt_ignore_flags'):
            if key in results:
                results[key] = results[key][keep]
        results['gt_bboxes_labels'] = np.arange(len(keep), dtype=np.int64)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(nms_thr={self.nms_thr}, max_phrases={self.max_phrases})'

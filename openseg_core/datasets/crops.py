"""Single-object crops and stuff patches cut from COCO files: zero-shot classification data
for a CLIP (the crop shows one object or region; the model names it among the vocabulary)."""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset
from mmengine.fileio import load
from PIL import Image

from openseg_core.registry import DATASETS, TRANSFORMS

from .errors import DatasetError, require_file


def square_crop_box(bbox: Sequence[float], scale: float, width: int, height: int) -> list:
    """A square of side ``scale * max(w, h)`` around ``bbox`` (COCO ``x, y, w, h``), moved
    (not cut) to stay inside the image when it fits -> int ``[x0, y0, x1, y1]``."""
    x, y, w, h = bbox
    side = int(round(min(width, height, max(4.0, scale * max(w, h)))))
    x0 = int(round(min(max(x + w / 2 - side / 2, 0), width - side)))
    y0 = int(round(min(max(y + h / 2 - side / 2, 0), height - side)))
    return [x0, y0, x0 + side, y0 + side]


@DATASETS.register_module()
class ObjectCropsDataset(BaseDataset):
    """One sample per object of a COCO instances file (a square crop around its box) and,
    optionally, per stuff segment of a COCO panoptic file (the square window that lies most
    inside it).

    Data infos: ``img_path``, ``crop_box`` ``[x0, y0, x1, y1]``, ``gt_label`` (index into
    ``classes`` = things of the instances file, then stuff of the panoptic file) and
    ``group``: ``'seen'``, ``'held_out'`` (things; a category with a true ``held_out`` field,
    or named in ``held_out_classes``) or ``'stuff'``.

    Args:
        ann_file: COCO instances json (things).
        stuff_ann_file: COCO panoptic json whose non-thing segments give stuff patches
            (``data_prefix['seg']`` holds its PNGs); ``None``: things only.
        crop_scale: side of a thing's crop over the longer side of its box (context around it).
        patch_fraction: side of a stuff patch over the image's shorter side.
        min_stuff_fraction: a stuff patch is kept if at least this share of it is the stuff.
        held_out_classes: names counted as held out besides the file's ``held_out`` flags.
    """

    def __init__(self, stuff_ann_file: Optional[str] = None, crop_scale: float = 1.3,
                 patch_fraction: float = 0.25, min_stuff_fraction: float = 0.8,
                 held_out_classes: Sequence[str] = (), **kwargs):
        self.stuff_ann_file = stuff_ann_file
        self.crop_scale = crop_scale
        self.patch_fraction = patch_fraction
        self.min_stuff_fraction = min_stuff_fraction
        self.held_out_classes = tuple(held_out_classes)
        super().__init__(**kwargs)

    def _stuff_path(self) -> Optional[str]:
        # BaseDataset joins data_root to ann_file and data_prefix only.
        if not self.stuff_ann_file:
            return None
        if osp.isabs(self.stuff_ann_file) or not self.data_root:
            return self.stuff_ann_file
        return osp.join(self.data_root, self.stuff_ann_file)

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'instances file')
        inst = load(self.ann_file)
        things = list(inst['categories'])
        held = {c['name'] for c in things if c.get('held_out')} | set(self.held_out_classes)
        stuff_path = self._stuff_path()
        pan = None
        stuff = []
        if stuff_path:
            require_file(stuff_path, 'panoptic file')
            pan = load(stuff_path)
            thing_names = {c['name'] for c in things}
            stuff = [c for c in pan['categories']
                     if not c.get('isthing', 1) and c['name'] not in thing_names]
        classes = tuple(c['name'] for c in things) + tuple(c['name'] for c in stuff)
        self._metainfo.update(classes=classes, thing_classes=tuple(c['name'] for c in things),
                              stuff_classes=tuple(c['name'] for c in stuff))
        label = {c['id']: i for i, c in enumerate(things)}
        images = {img['id']: img for img in inst['images']}
        img_dir = self.data_prefix.get('img', '')
        data_list = []
        for ann in inst['annotations']:
            if ann.get('iscrowd', 0):
                continue
            if ann['category_id'] not in label:
                raise DatasetError(f"{self.ann_file}: annotation {ann['id']} names category "
                                   f"{ann['category_id']}, which 'categories' does not define")
            img = images[ann['image_id']]
            name = things[label[ann['category_id']]]['name']
            data_list.append(dict(
                img_path=osp.join(img_dir, img['file_name']), img_id=img['id'],
                crop_box=square_crop_box(ann['bbox'], self.crop_scale, img['width'],
                                         img['height']),
                gt_label=label[ann['category_id']], group='held_out' if name in held else 'seen'))
        if pan is not None:
            data_list += self._stuff_patches(pan, stuff, len(things), img_dir)
        return data_list

    def _stuff_patches(self, pan: dict, stuff: List[dict], offset: int, img_dir: str) -> list:
        seg_dir = self.data_prefix.get('seg', '')
        label = {c['id']: offset + i for i, c in enumerate(stuff)}
        images = {img['id']: img for img in pan['images']}
        patches = []
        for record in pan['annotations']:
            segments = [s for s in record['segments_info'] if s['category_id'] in label]
            if not segments:
                continue
            png = osp.join(seg_dir, record['file_name'])
            require_file(png, 'panoptic PNG')
            rgb = np.asarray(Image.open(png).convert('RGB'), np.int64)
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
            height, width = ids.shape
            side = max(4, int(self.patch_fraction * min(height, width)))
            step = max(1, side // 4)
            img = images[record['image_id']]
            for seg in segments:
                # Share of the segment in every window (an integral image), best window kept.
                inside = np.pad((ids == seg['id']).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
                ys = np.arange(0, height - side + 1, step)[:, None]
                xs = np.arange(0, width - side + 1, step)[None, :]
                share = (inside[ys + side, xs + side] - inside[ys, xs + side]
                         - inside[ys + side, xs] + inside[ys, xs]) / side ** 2
                best = np.unravel_index(np.argmax(share), share.shape)
                if share[best] < self.min_stuff_fraction:
                    continue
                y0, x0 = int(ys[best[0], 0]), int(xs[0, best[1]])
                patches.append(dict(img_path=osp.join(img_dir, img['file_name']),
                                    img_id=img['id'], crop_box=[x0, y0, x0 + side, y0 + side],
                                    gt_label=label[seg['category_id']], group='stuff'))
        return patches


@TRANSFORMS.register_module()
class CropToBox(BaseTransform):
    """Cut ``results['img']`` to ``results['crop_box']`` (``[x0, y0, x1, y1]``, pixels)."""

    def transform(self, results: dict) -> dict:
        x0, y0, x1, y1 = (int(v) for v in results['crop_box'])
        results['img'] = results['img'][y0:y1, x0:x1]
        results['img_shape'] = results['img'].shape[:2]
        return results

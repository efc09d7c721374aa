"""Localized Narratives joined with the images' instance annotations (trace evaluation)."""
import os.path as osp
from typing import List, Optional

from mmengine.fileio import load

from openseg_core.datasets import LocalizedNarrativesDataset
from openseg_core.datasets.errors import DatasetError, require_file

from ..registry import DATASETS


@DATASETS.register_module()
class NarrativesDataset(LocalizedNarrativesDataset):
    """The core's Localized Narratives loader (caption, words, word boxes), optionally with
    the objects of each image from a COCO instances file, so that a trace can be scored
    against their masks (``TraceQualityMetric``).

    Each data info gets ``instances`` (``bbox`` xyxy, ``bbox_label`` into the file's
    categories, ``mask``) and the dataset's ``classes`` are the file's category names. The
    narrative's ``image_id`` is matched to the image whose file name (without extension) it
    is, or whose id it is.

    Args:
        instances_file: COCO instances JSON (relative to ``data_root``), or ``None``.
    """

    def __init__(self, instances_file: Optional[str] = None, **kwargs):
        self.instances_file = instances_file
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        if self.instances_file is None:
            return data_list
        path = self.instances_file if osp.isabs(self.instances_file) else osp.join(
            self.data_root, self.instances_file)
        require_file(path, 'instances annotation file')
        coco = load(path)
        cats = sorted(coco['categories'], key=lambda c: c['id'])
        label = {c['id']: i for i, c in enumerate(cats)}
        self._metainfo['classes'] = tuple(c['name'] for c in cats)
        images = {}
        for image in coco['images']:
            images[osp.splitext(image['file_name'])[0]] = image
            images[str(image['id'])] = image
        by_image = {}
        for ann in coco['annotations']:
            by_image.setdefault(ann['image_id'], []).append(ann)
        for info in data_list:
            image = images.get(str(info['img_id']))
            if image is None:
                raise DatasetError(f'{path}: no image for narrative image_id {info["img_id"]!r}')
            info['height'], info['width'] = image['height'], image['width']
            info['instances'] = [
                dict(bbox=[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                           a['bbox'][1] + a['bbox'][3]],
                     bbox_label=label[a['category_id']], ignore_flag=0, mask=a['segmentation'])
                for a in by_image.get(image['id'], [])]
        return data_list

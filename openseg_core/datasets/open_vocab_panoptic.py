"""COCO-panoptic files (COCO, ADE20K-panoptic, shapes) with the vocabulary as data."""
import copy
from typing import List, Sequence

import numpy as np
from mmdet.datasets import CocoPanopticDataset
from mmdet.datasets.api_wrappers import COCOPanoptic
from mmengine.fileio import get_local_path

from openseg_core.registry import DATASETS

from .errors import DatasetError, require_file


def _fallback_colour(index: int) -> tuple:
    rng = np.random.default_rng(index)
    return tuple(int(v) for v in rng.integers(0, 256, 3))


@DATASETS.register_module()
class OpenVocabPanopticDataset(CocoPanopticDataset):
    """mmdet's ``CocoPanopticDataset``, taking its classes from the annotation file.

    Labels are contiguous, things first, in the file's category order, as mmdet's panoptic
    losses and metrics expect. Segments of ``exclude_classes`` (the held-out classes of an
    open-vocabulary split) become void (label 255) rather than an error.

    Args:
        exclude_classes: category names treated as unlabelled.
        **kwargs: as ``CocoPanopticDataset`` (``ann_file``, ``data_root``, ``data_prefix``
            with ``img`` and ``seg``, ``pipeline``...). A ``metainfo`` with ``classes`` fixes the
            vocabulary instead of the file.
    """

    def __init__(self, *args, exclude_classes: Sequence[str] = (), **kwargs):
        self.exclude_classes = tuple(exclude_classes)
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'panoptic annotation file')
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            self.coco = COCOPanoptic(local_path)
        cats = self.coco.load_cats(self.coco.get_cat_ids())
        known = {c['id'] for c in cats}
        # COCOPanoptic keys segments by id, which repeat across images: values are lists.
        for segment in (seg for segs in self.coco.anns.values() for seg in segs):
            if segment['category_id'] not in known:
                raise DatasetError(
                    f"{self.ann_file}: segment {segment['id']} of image "
                    f"{segment['image_id']} names category {segment['category_id']}, which "
                    "the file's 'categories' do not define; fix the annotation or add it")
        if 'classes' not in self._metainfo or self._metainfo['classes'] == self.METAINFO[
                'classes']:
            names = lambda thing: tuple(c['name'] for c in cats  # noqa: E731
                                        if bool(c['isthing']) == thing
                                        and c['name'] not in self.exclude_classes)
            self._metainfo.update(thing_classes=names(True), stuff_classes=names(False))
            self._metainfo['classes'] = (self._metainfo['thing_classes'] +
                                         self._metainfo['stuff_classes'])
        name_to_id = {c['name']: c['id'] for c in cats}
        missing = [n for n in self._metainfo['classes'] if n not in name_to_id]
        if missing:
            raise DatasetError(f'{self.ann_file}: classes {missing} are not among its categories')
        self.cat_ids = [name_to_id[n] for n in self._metainfo['classes']]
        # COCO-panoptic categories carry a display colour; mmdet's visualizer needs one per class.
        colours = {c['name']: tuple(c['color']) for c in cats if 'color' in c}
        self._metainfo['palette'] = [colours.get(n, _fallback_colour(i))
                                     for i, n in enumerate(self._metainfo['classes'])]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)

        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = self.coco.load_imgs([img_id])[0]
            raw_img_info['img_id'] = img_id
            # Segments outside the vocabulary stay unlabelled (void) instead of failing.
            anns = [a for a in self.coco.load_anns(self.coco.get_ann_ids(img_ids=[img_id]))
                    if a['category_id'] in self.cat2label]
            data_list.append(self.parse_data_info(dict(raw_ann_info=anns,
                                                       raw_img_info=raw_img_info)))
        del self.coco
        return data_list

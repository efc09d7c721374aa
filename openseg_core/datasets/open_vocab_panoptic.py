"""COCO-panoptic files (COCO, ADE20K-panoptic, shapes) with the vocabulary as data."""
import copy
from typing import List, Sequence, Tuple

import numpy as np
from mmdet.datasets import CocoPanopticDataset
from mmdet.datasets.api_wrappers import COCOPanoptic
from mmengine.fileio import get_local_path

from openseg_core.registry import DATASETS

from .errors import DatasetError, require_file


VOCABULARY_KEYS = ('classes', 'thing_classes', 'stuff_classes')


def _names(value, key: str) -> tuple:
    if isinstance(value, str):
        raise DatasetError(f'metainfo {key} must be a list of class names, not the string '
                           f'{value!r}')
    return tuple(value)


def _fallback_colour(index: int) -> tuple:
    rng = np.random.default_rng(index)
    return tuple(int(v) for v in rng.integers(0, 256, 3))


@DATASETS.register_module()
class OpenVocabPanopticDataset(CocoPanopticDataset):
    """mmdet's ``CocoPanopticDataset``, taking its classes from the annotation file.

    Labels are contiguous, things first, as mmdet's panoptic losses and metrics expect; the
    vocabulary (``thing_classes``, ``stuff_classes`` and ``classes = thing_classes +
    stuff_classes``) is what the model is given and what every metric scores. Segments of
    classes outside it become void (label 255) rather than an error.

    The vocabulary is, by default, every category of the file in its order. A ``metainfo``
    chooses it instead:

    - ``dict(classes=[...])``: these categories; each is a thing or stuff as the file says, and
      the order within things and within stuff is the list's;
    - ``dict(thing_classes=[...], stuff_classes=[...])``: exactly these (either may be left out
      for none), which must be things and stuff in the file.

    Args:
        exclude_classes: category names treated as unlabelled (the held-out classes of an
            open-vocabulary split).
        **kwargs: as ``CocoPanopticDataset`` (``ann_file``, ``data_root``, ``data_prefix``
            with ``img`` and ``seg``, ``pipeline``, ``metainfo``...).
    """

    def __init__(self, *args, exclude_classes: Sequence[str] = (), **kwargs):
        self.exclude_classes = tuple(exclude_classes)
        # mmengine merges a metainfo into the class's COCO defaults (80 things, 53 stuff): what
        # the user asked for is only known here.
        asked = kwargs.get('metainfo') or {}
        self._asked_vocabulary = {key: _names(asked[key], key) for key in VOCABULARY_KEYS
                                  if key in asked}
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'panoptic annotation file')
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            self.coco = _coco_panoptic(local_path, self.ann_file)
        cats = self.coco.load_cats(self.coco.get_cat_ids())
        known = {c['id'] for c in cats}
        # COCOPanoptic keys segments by id, which repeat across images: values are lists.
        for segment in (seg for segs in self.coco.anns.values() for seg in segs):
            if segment['category_id'] not in known:
                raise DatasetError(
                    f"{self.ann_file}: segment {segment['id']} of image "
                    f"{segment['image_id']} names category {segment['category_id']}, which "
                    "the file's 'categories' do not define; fix the annotation or add it")
        things, stuff = self._vocabulary(cats)
        self._metainfo.update(thing_classes=things, stuff_classes=stuff, classes=things + stuff)
        name_to_id = {c['name']: c['id'] for c in cats}
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

    def _vocabulary(self, cats: List[dict]) -> Tuple[tuple, tuple]:
        """``(thing_classes, stuff_classes)``: the file's, or the ones the metainfo asks for."""
        is_thing = {c['name']: bool(c['isthing']) for c in cats}
        asked = self._asked_vocabulary
        if 'thing_classes' in asked or 'stuff_classes' in asked:
            things, stuff = asked.get('thing_classes', ()), asked.get('stuff_classes', ())
            if 'classes' in asked and sorted(asked['classes']) != sorted(things + stuff):
                raise DatasetError(f'{self.ann_file}: metainfo classes {list(asked["classes"])} '
                                   'are not thing_classes + stuff_classes; give one or the other')
        else:
            names = asked.get('classes', tuple(c['name'] for c in cats))
            things = tuple(n for n in names if is_thing.get(n) is True)
            stuff = tuple(n for n in names if is_thing.get(n) is not True)
        names = things + stuff
        unknown = [n for n in names if n not in is_thing]
        if unknown:
            raise DatasetError(f'{self.ann_file}: classes {unknown} are not among its categories '
                               f'({", ".join(is_thing)}); check the spelling in metainfo')
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DatasetError(f'{self.ann_file}: metainfo repeats classes {repeated}; name '
                               'each once')
        wrong = [f'{n} ({"thing" if is_thing[n] else "stuff"})' for n in things + stuff
                 if is_thing[n] != (n in things)]
        if wrong:
            raise DatasetError(f'{self.ann_file}: metainfo puts {", ".join(wrong)} in the other '
                               'group than the file does; move them to thing_classes / '
                               'stuff_classes as the file says')
        things = tuple(n for n in things if n not in self.exclude_classes)
        stuff = tuple(n for n in stuff if n not in self.exclude_classes)
        if not things + stuff:
            raise DatasetError(f'{self.ann_file}: the vocabulary is empty (metainfo classes and '
                               'exclude_classes leave no class); keep at least one')
        return things, stuff


def _coco_panoptic(local_path: str, ann_file: str) -> COCOPanoptic:
    try:
        return COCOPanoptic(local_path)
    except ValueError as exc:  # json.JSONDecodeError
        raise DatasetError(f'panoptic annotation file {ann_file} is not valid JSON ({exc}); fix '
                           'or regenerate it') from None
    except (KeyError, TypeError) as exc:
        raise DatasetError(f'{ann_file} is not a COCO panoptic annotation file (missing or '
                           f'malformed {exc}); give the panoptic_*.json of the dataset') from None

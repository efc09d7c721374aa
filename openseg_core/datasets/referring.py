"""RefCOCO-style referring expressions: a refs file + a COCO instances file."""
import os.path as osp
import pickle
from typing import Dict, List, Tuple

from mmengine.dataset import BaseDataset
from mmengine.fileio import load

from openseg_core.registry import DATASETS

from .errors import DatasetError, require_file


def load_refs(path: str) -> list:
    """Read refs as JSON, or as the original RefCOCO pickle (``refs(unc).p``).

    The pickle is read with a restricted unpickler that builds only plain containers, so a
    crafted file cannot run code.
    """
    require_file(path, 'referring expressions file')
    if path.endswith('.json'):
        return load(path)

    class PlainUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            raise DatasetError(f'{path}: refs pickle holds a {module}.{name} object; only plain '
                               'lists/dicts are accepted (convert it to JSON)')

    with open(path, 'rb') as f:
        return PlainUnpickler(f, encoding='latin1').load()


def load_referring_split(data_root: str, refs_file: str, ann_file: str,
                         split: str) -> Tuple[List[dict], Dict[int, dict], Dict[int, dict]]:
    """The refs of ``split`` (``refs_file`` relative to ``data_root`` unless absolute) and
    the instances file's annotations and images, each by id: what every RefCOCO-style
    dataset reads first."""
    refs_path = refs_file if osp.isabs(refs_file) else osp.join(data_root, refs_file)
    refs = [r for r in load_refs(refs_path) if r['split'] == split]
    require_file(ann_file, 'instances annotation file')
    coco = load(ann_file)
    anns = {a['id']: a for a in coco['annotations']}
    images = {i['id']: i for i in coco['images']}
    return refs, anns, images


@DATASETS.register_module()
class ReferringDataset(BaseDataset):
    """One sample per (referred object, sentence) of ``split``; the mask comes from the
    instances file (RLE or polygons), decoded by mmdet's ``LoadAnnotations(with_mask=True)``.

    Each data info has ``img_path``, ``img_id``, ``text`` (the sentence), ``ref_id`` and
    ``instances`` (one, the referred object: ``bbox`` xyxy, ``bbox_label`` 0, ``mask``).

    Args:
        refs_file: RefCOCO-style refs (``.json`` or the original ``.p``).
        ann_file: COCO instances JSON holding the referred annotations.
        split: the refs' ``split`` value to keep (``train``, ``val``, ``testA``...).
    """

    METAINFO = dict(classes=('object',))

    def __init__(self, refs_file: str, split: str, **kwargs):
        self.refs_file = refs_file
        self.split = split
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        refs, anns, images = load_referring_split(self.data_root, self.refs_file,
                                                  self.ann_file, self.split)
        data_list = []
        for ref in refs:
            if ref['ann_id'] not in anns:
                raise DatasetError(f"{refs_path}: ref {ref['ref_id']} names annotation "
                                   f"{ref['ann_id']}, absent from {self.ann_file}")
            ann, image = anns[ref['ann_id']], images[ref['image_id']]
            x, y, w, h = ann['bbox']
            for sentence in ref['sentences']:
                data_list.append(dict(
                    img_path=osp.join(self.data_prefix.get('img', ''), image['file_name']),
                    img_id=image['id'], height=image['height'], width=image['width'],
                    ref_id=ref['ref_id'], text=sentence['sent'],
                    instances=[dict(bbox=[x, y, x + w, y + h], bbox_label=0, ignore_flag=0,
                                    mask=ann['segmentation'])]))
        return data_list

"""Objects with captions from RefCOCO-style refs: location-conditioned and dense captioning."""
import os.path as osp
from typing import List

from mmengine.dataset import BaseDataset

from openseg_core.datasets import load_referring_split
from openseg_core.datasets.errors import DatasetError

from ..registry import DATASETS


@DATASETS.register_module()
class ObjectCaptionsDataset(BaseDataset):
    """Referred objects and their sentences as object captions.

    ``per='object'``: one sample per referred object (``instances`` = it, ``text`` its first
    sentence, ``captions`` all of them): location-conditioned captioning, the box given.
    ``per='image'``: one sample per image with every referred object (``instances``) and its
    sentences (``gt_captions``, a list per object): dense captioning.

    Args:
        refs_file: RefCOCO-style refs (``.json`` or the original ``.p``).
        ann_file: COCO instances JSON holding the referred annotations.
        split: the refs' ``split`` value to keep.
        per: ``'object'`` or ``'image'``.
    """

    METAINFO = dict(classes=('object',))

    def __init__(self, refs_file: str, split: str, per: str = 'object', **kwargs):
        if per not in ('object', 'image'):
            raise ValueError(f"ObjectCaptionsDataset: per must be 'object' or 'image', got "
                             f'{per!r}')
        self.refs_file = refs_file
        self.split = split
        self.per = per
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        refs, anns, images = load_referring_split(self.data_root, self.refs_file,
                                                  self.ann_file, self.split)
        objects = {}  # ann id -> (image, ann, sentences), in the refs' order
        for ref in refs:
            if ref['ann_id'] not in anns:
                raise DatasetError(f"{refs_path}: ref {ref['ref_id']} names annotation "
                                   f"{ref['ann_id']}, absent from {self.ann_file}")
            entry = objects.setdefault(ref['ann_id'], (images[ref['image_id']],
                                                       anns[ref['ann_id']], []))
            entry[2].extend(s['sent'] for s in ref['sentences'])
        groups = {}
        for image, ann, sentences in objects.values():
            key = image['id'] if self.per == 'image' else ann['id']
            groups.setdefault(key, (image, []))[1].append((ann, sentences))
        data_list = []
        for image, members in groups.values():
            instances = []
            for ann, _ in members:
                x, y, w, h = ann['bbox']
                instances.append(dict(bbox=[x, y, x + w, y + h], bbox_label=0, ignore_flag=0,
                                      mask=ann['segmentation']))
            info = dict(img_path=osp.join(self.data_prefix.get('img', ''), image['file_name']),
                        img_id=image['id'], height=image['height'], width=image['width'],
                        instances=instances, gt_captions=[s for _, s in members])
            if self.per == 'object':
                info.update(text=members[0][1][0], captions=list(members[0][1]))
            data_list.append(info)
        return data_list

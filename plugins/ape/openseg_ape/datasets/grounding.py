"""Image-centric grounding data: every phrase of an image in one sample (APE)."""
import os.path as osp
from collections import defaultdict
from typing import List

from mmengine.dataset import BaseDataset

from openseg_core.datasets import DatasetError, load_referring_split

from ..registry import DATASETS


@DATASETS.register_module()
class GroundingDataset(BaseDataset):
    """RefCOCO-format referring expressions grouped by image: one sample per image holding
    every (object, sentence) pair of ``split``, as APE's ``*_group-by-image`` sets. Add
    ``ape.SampleGroundingPhrases`` to the pipeline to keep one phrase per object.

    Each data info has ``img_path``, ``img_id``, ``phrases`` (list of str) and
    ``instances`` (one per phrase: ``bbox`` xyxy, ``bbox_label`` its phrase index, ``mask``).

    Args:
        refs_file: RefCOCO-style refs (``.json`` or the original ``.p``).
        ann_file: COCO instances JSON holding the referred annotations.
        split: the refs' ``split`` value to keep.
    """

    METAINFO = dict(classes=())

    def __init__(self, refs_file: str, split: str, **kwargs):
        self.refs_file = refs_file
        self.split = split
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        refs, anns, images = load_referring_split(self.data_root, self.refs_file,
                                                  self.ann_file, self.split)
        by_image = defaultdict(list)
        for ref in refs:
            if ref['ann_id'] not in anns:
                raise DatasetError(f"{refs_path}: ref {ref['ref_id']} names annotation "
                                   f"{ref['ann_id']}, absent from {self.ann_file}")
            if ref['image_id'] not in images:
                raise DatasetError(f"{refs_path}: ref {ref['ref_id']} names image "
                                   f"{ref['image_id']}, absent from {self.ann_file}")
            by_image[ref['image_id']].append(ref)
        data_list = []
        for image_id, image_refs in by_image.items():
            image = images[image_id]
            phrases, instances = [], []
            for ref in image_refs:
                ann = anns[ref['ann_id']]
                x, y, w, h = ann['bbox']
                for sentence in ref['sentences']:
                    instances.append(dict(bbox=[x, y, x + w, y + h], bbox_label=len(phrases),
                                          ignore_flag=0, mask=ann['segmentation']))
                    phrases.append(sentence['sent'])
            data_list.append(dict(
                img_path=osp.join(self.data_prefix.get('img', ''), image['file_name']),
                img_id=image_id, height=image['height'], width=image['width'],
                phrases=phrases, instances=instances))
        return data_list

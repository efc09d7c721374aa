"""COCO-panoptic data with each image's captions (ODISE's caption supervision trains its
masks on the panoptic annotations and its classifier on the captions of the same images)."""
import os.path as osp
from collections import defaultdict
from typing import List

from mmengine.fileio import load

from openseg_core.datasets import OpenVocabPanopticDataset
from openseg_core.datasets.errors import require_file

from ..registry import DATASETS


@DATASETS.register_module()
class PanopticCaptionsDataset(OpenVocabPanopticDataset):
    """:class:`~openseg_core.datasets.OpenVocabPanopticDataset` whose samples also carry
    ``captions``: every caption of the image in a COCO-captions file (matched by image id),
    packed by ``PackOpenSegInputs``. Images without a caption keep an empty list.

    Args:
        caption_file: a COCO ``captions_*.json`` (relative to ``data_root``).
        (others as ``OpenVocabPanopticDataset``)
    """

    def __init__(self, *args, caption_file: str, **kwargs):
        self.caption_file = caption_file
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        path = self.caption_file
        if self.data_root and not osp.isabs(path):
            path = osp.join(self.data_root, path)
        require_file(path, 'captions file')
        captions = defaultdict(list)
        for ann in load(path)['annotations']:
            captions[ann['image_id']].append(ann['caption'])
        for info in data_list:
            info['captions'] = list(captions.get(info['img_id'], []))
        return data_list

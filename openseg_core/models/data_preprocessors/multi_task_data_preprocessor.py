"""mmdet's detection data preprocessor for batches that mix tasks."""
from typing import Sequence

from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures import DetDataSample

from openseg_core.registry import MODELS


@MODELS.register_module()
class MultiTaskDataPreprocessor(DetDataPreprocessor):
    """``DetDataPreprocessor`` that pads masks and semantic maps sample by sample.

    mmdet decides from the first sample whether a batch has masks or a semantic map, so a
    batch of panoptic, referring and caption samples (X-Decoder's mixed pre-training) fails
    or leaves some targets unpadded. Here each sample is padded if it has the target.
    """

    def pad_gt_masks(self, batch_data_samples: Sequence[DetDataSample]) -> None:
        for sample in batch_data_samples:
            if 'gt_instances' in sample and 'masks' in sample.gt_instances:
                super().pad_gt_masks([sample])

    def pad_gt_sem_seg(self, batch_data_samples: Sequence[DetDataSample]) -> None:
        for sample in batch_data_samples:
            if 'gt_sem_seg' in sample:
                super().pad_gt_sem_seg([sample])

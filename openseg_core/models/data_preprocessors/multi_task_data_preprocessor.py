"""mmdet's detection data preprocessor for batches that mix tasks."""
from typing import Sequence

from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures import DetDataSample

from openseg_core.registry import MODELS

from ..interfaces import implements


@implements('DataPreprocessor', example=dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
    pad_size_divisor=32, pad_mask=True, pad_seg=True, seg_pad_value=255))
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

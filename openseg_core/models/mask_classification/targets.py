"""Training targets of mask classification from panoptic annotations."""
from typing import List

from mmdet.models.utils import preprocess_panoptic_gt
from mmdet.structures import SampleList
from mmengine.structures import InstanceData

from ..base import Vocabulary


def panoptic_targets(data_samples: SampleList, vocabulary: Vocabulary) -> List[InstanceData]:
    """Per image ``labels (G,)`` and binary ``masks (G, H, W)``: things from
    ``gt_instances``, stuff from ``gt_sem_seg`` (mmdet's ``preprocess_panoptic_gt``), labels
    indexing ``vocabulary.names``.

    Raises:
        ValueError: a label outside the vocabulary (the dataset and the model disagree on
            the classes).
    """
    targets = []
    for sample in data_samples:
        sem = sample.gt_sem_seg.sem_seg if 'gt_sem_seg' in sample else None
        labels, masks = preprocess_panoptic_gt(
            sample.gt_instances.labels, sample.gt_instances.masks, sem, vocabulary.num_things,
            vocabulary.num_stuff)
        if labels.numel() and int(labels.max()) >= len(vocabulary):
            raise ValueError(f'target label {int(labels.max())} is outside the vocabulary of '
                             f'{len(vocabulary)} classes; the dataset names other classes than '
                             'the model (check thing_classes/stuff_classes)')
        targets.append(InstanceData(labels=labels, masks=masks))
    return targets

"""What every open-vocabulary mask-classification model shares: the vocabulary, panoptic
targets in its label space, and packing post-processed results into data samples."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from mmdet.models.utils import preprocess_panoptic_gt
from mmdet.structures import SampleList
from torch import Tensor


class OpenVocabularyMixin:
    """For an mmengine ``BaseModel`` whose classes are text, chosen at run time.

    :meth:`set_vocabulary` is what ``VocabularyHook`` and users call; labels index
    ``thing_classes + stuff_classes``. The model provides ``loss``, ``predict``,
    ``tensor_outputs(inputs)`` and a ``postprocessor`` (``MaskPostProcessor``).
    """

    thing_classes: tuple = ()
    stuff_classes: tuple = ()

    def set_vocabulary(self, thing_classes: Sequence[str],
                       stuff_classes: Sequence[str] = ()) -> None:
        """Classify into these names from now on; labels index ``things + stuff``."""
        names = list(thing_classes) + list(stuff_classes)
        if not names:
            raise ValueError('the vocabulary is empty: give at least one class name')
        if len(set(names)) != len(names):
            raise ValueError(f'the vocabulary repeats a class name: {names}')
        self.thing_classes, self.stuff_classes = tuple(thing_classes), tuple(stuff_classes)

    @property
    def classes(self) -> tuple:
        return self.thing_classes + self.stuff_classes

    def panoptic_targets(self, data_samples: SampleList) -> Tuple[List[Tensor], List[Tensor]]:
        """Per image ``labels (G,)`` and binary ``masks (G, H, W)``: things from the instances,
        stuff from the semantic map (mmdet's ``preprocess_panoptic_gt``)."""
        num_things, num_stuff = len(self.thing_classes), len(self.stuff_classes)
        gt_labels, gt_masks = [], []
        for sample in data_samples:
            sem = sample.gt_sem_seg.sem_seg if 'gt_sem_seg' in sample else None
            labels, masks = preprocess_panoptic_gt(
                sample.gt_instances.labels, sample.gt_instances.masks, sem, num_things,
                num_stuff)
            if labels.numel() and int(labels.max()) >= num_things + num_stuff:
                raise ValueError(f'target label {int(labels.max())} is outside the vocabulary '
                                 f'of {num_things + num_stuff} classes')
            gt_labels.append(labels)
            gt_masks.append(masks)
        return gt_labels, gt_masks

    def segment(self, cls_logits: Tensor, mask_logits: Tensor, inputs: Tensor,
                data_samples: SampleList, rescale: bool = True) -> None:
        """``(B, Q, K+1)`` class and ``(B, Q, h, w)`` mask logits -> panoptic / semantic /
        instance predictions stored in ``data_samples`` (at the original image size)."""
        mask_logits = F.interpolate(mask_logits, size=inputs.shape[-2:], mode='bilinear',
                                    align_corners=False)
        results = self.postprocessor.predict(
            cls_logits, mask_logits, [s.metainfo for s in data_samples],
            num_things=len(self.thing_classes), num_stuff=len(self.stuff_classes),
            rescale=rescale)
        self.attach_results(data_samples, results)

    def forward(self, inputs: Tensor, data_samples: Optional[SampleList] = None,
                mode: str = 'tensor') -> Union[Dict, SampleList]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.tensor_outputs(inputs)
        raise ValueError(f'mode must be loss, predict or tensor, not {mode!r}')

    @staticmethod
    def attach_results(data_samples: SampleList, results: List[dict]) -> None:
        """Store ``MaskPostProcessor`` results as ``pred_panoptic_seg`` / ``pred_sem_seg`` /
        ``pred_instances``."""
        fields = dict(pan_results='pred_panoptic_seg', sem_results='pred_sem_seg',
                      ins_results='pred_instances')
        for sample, result in zip(data_samples, results):
            for key, field in fields.items():
                if key in result:
                    setattr(sample, field, result[key])

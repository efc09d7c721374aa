"""Data transforms of PixelLLM's tasks."""
import math

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from openseg_core.datasets import PackOpenSegInputs

from ..registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadNarrativeTargets(BaseTransform):
    """A Localized Narratives sample as PixelLLM trains on it: the caption becomes ``text``
    (and the one reference in ``captions``), its words ``gt_words`` and their boxes
    ``gt_word_boxes`` (``(W, 4)`` fractions of the image, NaN rows for words without a
    trace). Fractions stay valid through resizing; flips and crops would break the words'
    boxes (and "left" / "right"), so the pipelines use none."""

    def transform(self, results: dict) -> dict:
        results['text'] = results['caption']
        results['captions'] = [results['caption']]
        results['gt_words'] = list(results['words'])
        results['gt_word_boxes'] = np.array(
            [box if box is not None else (math.nan,) * 4 for box in results['word_boxes']],
            dtype=np.float32).reshape(-1, 4)
        return results


@TRANSFORMS.register_module()
class PackPixelLLMInputs(PackOpenSegInputs):
    """``PackOpenSegInputs`` that also packs a narrative's ``gt_words`` (list of str) and
    ``gt_word_boxes`` (Tensor ``(W, 4)``) as data fields of the sample."""

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        sample = packed['data_samples']
        if 'gt_words' in results:
            sample.set_field(list(results['gt_words']), 'gt_words')
            sample.set_field(torch.as_tensor(results['gt_word_boxes']), 'gt_word_boxes')
        return packed

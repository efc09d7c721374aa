"""Zero-shot classification accuracy of crops, per group (seen / held-out things, stuff)."""
from collections import OrderedDict, defaultdict
from typing import List, Sequence

import torch
from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS


@METRICS.register_module()
class ZeroShotCropMetric(BaseMetric):
    """Top-1 accuracy (percent) of classifying each crop among its kind's classes.

    A thing crop is classified among the dataset's ``thing_classes`` and a stuff patch among
    its ``stuff_classes`` (``ObjectCropsDataset`` sets both), so chance is ``1 / #things`` or
    ``1 / #stuff`` whatever the other kind holds. Reported per ``group`` of the samples:
    ``top1_seen``, ``top1_held_out``, ``top1_stuff`` (a group without samples is left out),
    ``top1_things`` over all thing crops, and ``top1_<class>`` per class.

    Each sample needs ``pred_score`` (``(K,)`` over ``thing_classes + stuff_classes``),
    ``gt_label`` (int, into the same list) and ``group``.
    """

    default_prefix = 'zero_shot'

    def __init__(self, per_class: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.per_class = per_class

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if sample.get('pred_score') is None or sample.get('gt_label') is None:
                raise ValueError('ZeroShotCropMetric: each sample needs pred_score and '
                                 'gt_label; evaluate a zero-shot classifier (e.g. '
                                 'ContrastiveCLIP) on ObjectCropsDataset')
            score = torch.as_tensor(sample['pred_score']).detach().float().cpu()
            self.results.append((score, int(sample['gt_label']), str(sample['group'])))

    def compute_metrics(self, results: List[tuple]) -> dict:
        if not results:
            raise ValueError('ZeroShotCropMetric: no samples were evaluated')
        meta = self.dataset_meta or {}
        if 'thing_classes' not in meta:
            raise ValueError('ZeroShotCropMetric needs the dataset\'s thing_classes and '
                             'stuff_classes (ObjectCropsDataset sets them)')
        n_things = len(meta['thing_classes'])
        names = tuple(meta['thing_classes']) + tuple(meta.get('stuff_classes', ()))
        hits = defaultdict(list)
        for score, label, group in results:
            if len(score) != len(names):
                raise ValueError(f'ZeroShotCropMetric: pred_score has {len(score)} classes, '
                                 f'the dataset {len(names)}')
            # Only the crop's own kind competes: a thing among things, stuff among stuff.
            span = slice(0, n_things) if label < n_things else slice(n_things, len(names))
            pred = span.start + int(score[span].argmax())
            hits[group].append(pred == label)
            if label < n_things:
                hits['things'].append(pred == label)
            hits[names[label]].append(pred == label)
        metrics = OrderedDict()
        for group in ('seen', 'held_out', 'stuff', 'things'):
            if hits[group]:
                metrics[f'top1_{group}'] = 100.0 * sum(hits[group]) / len(hits[group])
        if self.per_class:
            for name in names:
                if hits[name]:
                    metrics[f'top1_{name}'] = 100.0 * sum(hits[name]) / len(hits[name])
        return metrics

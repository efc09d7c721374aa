"""Quality of a trace: the point a model gives each word it says (PixelLLM)."""
import math
import re
from collections import Counter, OrderedDict
from typing import Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS


def _word(text: str) -> str:
    return re.sub(r'[^\w-]', '', text.lower())


def _masks(value) -> torch.Tensor:
    """mmdet ``BitmapMasks`` or a tensor -> bool ``(N, H, W)``."""
    if hasattr(value, 'to_tensor'):
        return value.to_tensor(torch.bool, 'cpu')
    return torch.as_tensor(value).bool().cpu()


@METRICS.register_module()
class TraceQualityMetric(BaseMetric):
    """How well a caption's words point at what they name.

    - ``point_in_mask``: of the generated words that name a class present in the image (the
      *object words*), the share whose point falls inside the mask of an object of that
      class (any of them when the image holds several);
    - ``mention_recall``: the share of the image's objects whose class the caption names
      (as many times as there are objects), so that a caption naming one object cannot
      score alone;
    - ``L1``: with teacher-forced traces of the reference caption, the mean absolute
      difference in pixels between predicted and annotated word boxes (both corners),
      over words that have an annotation; ``L1_object``: the same over the object words
      alone. A model that has learnt the layout of the images but cannot find the object
      it names scores a good ``L1`` (most words name large regions) and a poor
      ``L1_object``, and ``point_in_mask`` then comes from where objects usually are.

    Each data sample needs ``pred_trace`` (list of ``dict(word=str, point=[x, y])`` in
    original image pixels) and, in its metainfo, ``gt_masks`` (``(N, H, W)``) and
    ``gt_bboxes_labels`` (``(N,)`` indices into the class names). For ``L1``: ``forced_trace``
    (list of ``dict(word=str, box=[x1, y1, x2, y2])`` in original pixels, one per reference
    word) and ``gt_word_boxes`` (``(W, 4)`` fractions of the image's width and height, as
    Localized Narratives give them, NaN rows for words without a trace) with ``ori_shape``.

    Args:
        classes: class names; default the evaluated dataset's ``classes``.
    """

    default_prefix = 'trace'

    def __init__(self, classes: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(**kwargs)
        self._classes = tuple(classes) if classes is not None else None

    @property
    def classes(self) -> tuple:
        if self._classes is not None:
            return self._classes
        meta = self.dataset_meta or {}
        names = meta.get('classes') or meta.get('thing_classes')
        if not names:
            raise ValueError('TraceQualityMetric needs class names: give classes=[...] or '
                             "evaluate on a dataset whose metainfo has 'classes'")
        return tuple(names)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        names = [_word(n) for n in self.classes]
        for sample in data_samples:
            trace = sample.get('pred_trace')
            if trace is None:
                raise ValueError('TraceQualityMetric: a sample has no pred_trace; evaluate a '
                                 'model that traces its captions (PixelLLM)')
            masks = _masks(sample['gt_masks'])
            labels = torch.as_tensor(sample['gt_bboxes_labels']).reshape(-1).tolist()
            by_name = {}
            for mask, label in zip(masks, labels):
                name = names[int(label)]
                by_name[name] = by_name.get(name, torch.zeros_like(mask)) | mask
            hits = words = 0
            mentioned = Counter()
            for entry in trace:
                word = _word(entry['word'])
                if word not in by_name:
                    continue
                words += 1
                mentioned[word] += 1
                x, y = (int(math.floor(c)) for c in entry['point'])
                mask = by_name[word]
                hits += int(0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]
                            and bool(mask[y, x]))
            counts = Counter(names[int(label)] for label in labels)
            recalled = sum(min(mentioned[n], c) for n, c in counts.items())
            l1_sum = l1_count = object_sum = object_count = 0.0
            if sample.get('forced_trace') is not None and 'gt_word_boxes' in sample:
                height, width = sample['ori_shape'][:2]
                gt = torch.as_tensor(sample['gt_word_boxes'], dtype=torch.float64).reshape(-1, 4)
                gt = gt * torch.tensor([width, height, width, height], dtype=torch.float64)
                pred = torch.tensor([e['box'] for e in sample['forced_trace']],
                                    dtype=torch.float64).reshape(-1, 4)
                if len(pred) != len(gt):
                    raise ValueError(f'TraceQualityMetric: {len(pred)} forced_trace words '
                                     f'for {len(gt)} gt_word_boxes')
                valid = ~torch.isnan(gt).any(-1) & ~torch.isnan(pred).any(-1)
                errors = (pred - gt).abs().mean(-1)
                l1_sum = float(errors[valid].sum())
                l1_count = int(valid.sum())
                named = valid & torch.tensor([_word(e['word']) in by_name
                                              for e in sample['forced_trace']], dtype=torch.bool)
                object_sum = float(errors[named].sum())
                object_count = int(named.sum())
            self.results.append(dict(hits=hits, words=words, recalled=recalled,
                                     objects=sum(counts.values()), l1_sum=l1_sum,
                                     l1_count=l1_count, object_sum=object_sum,
                                     object_count=object_count))

    def compute_metrics(self, results: list) -> dict:
        if not results:
            raise ValueError('TraceQualityMetric: no samples were evaluated')
        total = {key: sum(r[key] for r in results) for key in results[0]}
        words, objects = total['words'], total['objects']
        metrics = OrderedDict(point_in_mask=100 * total['hits'] / words if words
                              else float('nan'),
                              object_words=float(words),
                              mention_recall=100 * total['recalled'] / objects if objects
                              else float('nan'))
        if total['l1_count']:
            metrics['L1'] = total['l1_sum'] / total['l1_count']
        if total['object_count']:
            metrics['L1_object'] = total['object_sum'] / total['object_count']
        return metrics

"""Whether captions name the right attributes: per group of keywords (colours, classes...),
the share of captions that say the reference's word."""
from collections import OrderedDict
from typing import Dict, Sequence

from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS

from .caption_metric import tokenize_caption


@METRICS.register_module()
class CaptionKeywordMetric(BaseMetric):
    """For each group of keywords, the share of captions that contain the word of that group
    the references use (e.g. ``colour``: the reference says "red", so must the caption), and
    ``all``: the share right in every group at once.

    A sample whose references use no word of a group does not count for that group; one
    whose references use several (different references, different words) counts as right
    when the caption says any of them. Words are compared after the COCO caption
    tokenisation (lower case, punctuation dropped).

    Each data sample needs ``pred_caption`` (str) and ``captions`` (the references).

    Args:
        groups: ``{group name: [keyword, ...]}``.
    """

    default_prefix = 'keywords'

    def __init__(self, groups: Dict[str, Sequence[str]], **kwargs):
        super().__init__(**kwargs)
        if not groups:
            raise ValueError('CaptionKeywordMetric needs at least one group of keywords')
        self.groups = {name: frozenset(w.lower() for w in words)
                       for name, words in groups.items()}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            said = set(tokenize_caption(sample.get('pred_caption') or '').split())
            refs = set(w for r in sample.get('captions') or () for w in
                       tokenize_caption(r).split())
            row = {}
            for name, words in self.groups.items():
                wanted = refs & words
                if wanted:
                    row[name] = bool(said & wanted)
            self.results.append(row)

    def compute_metrics(self, results: list) -> dict:
        metrics = OrderedDict()
        for name in self.groups:
            scored = [r[name] for r in results if name in r]
            metrics[name] = 100 * sum(scored) / len(scored) if scored else float('nan')
        complete = [all(r.values()) for r in results if len(r) == len(self.groups)]
        metrics['all'] = 100 * sum(complete) / len(complete) if complete else float('nan')
        return metrics

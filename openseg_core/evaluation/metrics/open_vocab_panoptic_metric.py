"""mmdet's COCO panoptic and instance metrics, scored over the vocabulary that was evaluated."""
import contextlib
import math
from typing import Dict, Optional, Sequence

from mmdet.evaluation import CocoMetric, CocoPanopticMetric
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.evaluation.metrics.coco_panoptic_metric import (PQStat, parse_pq_results,
                                                           print_panoptic_table)
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from openseg_core.datasets.errors import DatasetError, require_file
from openseg_core.registry import METRICS


@contextlib.contextmanager
def _annotation_file(metric: str, ann_file, what: str):
    """Name the metric's file in the error when it is missing or not JSON."""
    if ann_file is not None:
        require_file(ann_file, f'{what} of {metric}')
    try:
        yield
    except ValueError as exc:  # json.JSONDecodeError
        raise DatasetError(f'{what} {ann_file} of {metric} is not valid JSON ({exc}); fix or '
                           'regenerate it') from None
    except (KeyError, TypeError) as exc:
        raise DatasetError(f'{ann_file} (ann_file of {metric}) is not a COCO {what} (missing '
                           f'or malformed {exc})') from None


def _not_applicable(labels) -> tuple:
    nan = dict(pq=math.nan, sq=math.nan, rq=math.nan)
    return dict(nan, n=0), {label: dict(nan) for label in labels}


@METRICS.register_module()
class OpenVocabPanopticMetric(CocoPanopticMetric):
    """``CocoPanopticMetric`` whose categories are the evaluated vocabulary, in its order.

    mmdet's metric maps predicted label ``i`` to the ``i``-th category *of the annotation file*
    and averages PQ over every category in the file. That holds only when the vocabulary is the
    file's categories in the file's order. An open-vocabulary evaluation breaks both: held-out
    classes are left out (they would count as classes never predicted, and shift the class-wise
    table), and openseg orders a vocabulary things first, which differs from the file's order
    where things and stuff interleave (ADE20K panoptic). Here label ``i`` is
    ``dataset_meta['classes'][i]`` matched by name, and PQ averages over those classes.

    A group with no class to score (a things-only or stuff-only vocabulary, or classes that
    never occur) has PQ/SQ/RQ ``nan`` (not applicable) where panopticapi divides by zero, and
    stuff of label 0 is scored (mmdet's metric writes it as VOID).

    Args:
        class_groups: more groups to average over besides things and stuff, e.g.
            ``dict(held_out=('diamond', 'star'))`` reports ``PQ_held_out``, ``SQ_held_out``,
            ``RQ_held_out`` over those of its classes that are in the vocabulary (``nan`` when
            none is). Not computed when predictions are written to ``outfile_prefix``.
        *args, **kwargs: those of ``CocoPanopticMetric``.
    """

    def __init__(self, *args, class_groups: Optional[Dict[str, Sequence[str]]] = None,
                 **kwargs):
        with _annotation_file(type(self).__name__, kwargs.get('ann_file'),
                              'panoptic annotation file'):
            super().__init__(*args, **kwargs)
        self.class_groups = {name: tuple(classes)
                             for name, classes in (class_groups or {}).items()}
        self._file_categories = (list(self._coco_api.dataset['categories'])
                                 if self._coco_api is not None else None)

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        # The evaluator sets the vocabulary once per run, before any batch is processed.
        BaseMetric.dataset_meta.fset(self, dataset_meta)
        if self._file_categories is not None:
            self._use_vocabulary(dataset_meta['classes'])

    def _use_vocabulary(self, classes: Sequence[str]) -> None:
        by_name = {c['name']: c for c in self._file_categories}
        missing = [name for name in classes if name not in by_name]
        if missing:
            raise DatasetError(f'{self.__class__.__name__}: classes {missing} are not among the '
                               'categories of its ann_file; evaluate against the annotation '
                               'file of the dataset being tested')
        vocabulary = [by_name[name] for name in classes]
        # mmdet maps labels to ids through ``get_cat_ids`` (the order of
        # ``dataset['categories']``) and averages PQ over ``categories``.
        self._coco_api.dataset['categories'] = vocabulary
        self._coco_api.cats = self.categories = {c['id']: c for c in vocabulary}

    def _parse_predictions(self, pred: dict, img_id: int, segm_file: str,
                           label2cat=None) -> dict:
        # A segment's id is label + instance * INSTANCE_OFFSET and stuff has instance 0, so
        # stuff of label 0 (the first class of a stuff-only vocabulary) has id 0, which
        # panopticapi reads as VOID: mmdet's metric silently loses that class. It gets an id
        # no other segment of the image uses, with the same label.
        pan = pred['pred_panoptic_seg']['sem_seg']
        if bool((pan == 0).any()):
            pan = pan.clone()
            pan[pan == 0] = (int(pan.max()) // INSTANCE_OFFSET + 1) * INSTANCE_OFFSET
            pred = dict(pred, pred_panoptic_seg=dict(pred['pred_panoptic_seg'], sem_seg=pan))
        return super()._parse_predictions(pred, img_id, segm_file, label2cat)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if self.tmp_dir is None:
            # Predictions written under ``outfile_prefix``: mmdet's file-based path.
            return super().compute_metrics(results)
        if self._coco_api is None:
            things = set(self.dataset_meta['thing_classes'])
            self.categories = {i: dict(id=i, name=name, isthing=int(name in things))
                               for i, name in enumerate(self.dataset_meta['classes'])}
        pq_stat = PQStat()
        for result in results:
            pq_stat += result
        pq_results = {}
        for name, isthing in (('All', None), ('Things', True), ('Stuff', False)):
            labels = [label for label, info in self.categories.items()
                      if isthing is None or (info['isthing'] == 1) == isthing]
            scored = any(pq_stat.pq_per_cat[label].tp + pq_stat.pq_per_cat[label].fp
                         + pq_stat.pq_per_cat[label].fn for label in labels)
            pq_results[name], classwise = (pq_stat.pq_average(self.categories, isthing)
                                           if scored else _not_applicable(labels))
            if name == 'All':
                pq_results['classwise'] = classwise
        classwise = (dict(zip(self.dataset_meta['classes'], pq_results['classwise'].values()))
                     if self.classwise else None)
        logger = MMLogger.get_current_instance()
        print_panoptic_table(pq_results, classwise, logger=logger)
        metrics = parse_pq_results(pq_results)
        for group, names in self.class_groups.items():
            members = {label: info for label, info in self.categories.items()
                       if info['name'] in names}
            scored = any(pq_stat.pq_per_cat[label].tp + pq_stat.pq_per_cat[label].fp
                         + pq_stat.pq_per_cat[label].fn for label in members)
            average = (pq_stat.pq_average(members, None)[0] if scored
                       else _not_applicable(members)[0])
            for key in ('pq', 'sq', 'rq'):
                metrics[f'{key.upper()}_{group}'] = 100 * average[key]
            present = ', '.join(info['name'] for info in members.values())
            logger.info(f'PQ over {group} ({present or "none in the vocabulary"}): '
                        f'{metrics["PQ_" + group]:.3f}')
        return metrics


@METRICS.register_module()
class OpenVocabCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` (box / mask AP) whose label ``i`` is the category named
    ``dataset_meta['classes'][i]``.

    mmdet looks the classes up with ``get_cat_ids(cat_names=...)``, which returns ids in the
    file's order, so a vocabulary in another order (things first, a user's subset or reordering)
    scores each class as another. Stuff classes are not in an instances file and are skipped
    (instance predictions are things). Same arguments as ``CocoMetric``.
    """

    def __init__(self, *args, **kwargs):
        with _annotation_file(type(self).__name__, kwargs.get('ann_file'),
                              'instances annotation file'):
            super().__init__(*args, **kwargs)

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        BaseMetric.dataset_meta.fset(self, dataset_meta)
        if self._coco_api is None:
            return
        by_name = {c['name']: c['id'] for c in self._coco_api.dataset['categories']}
        things = dataset_meta.get('thing_classes', dataset_meta['classes'])
        missing = [name for name in things if name not in by_name]
        if missing:
            raise DatasetError(f'{type(self).__name__}: classes {missing} are not among the '
                               'categories of its ann_file; evaluate against the instances file '
                               'of the dataset being tested')
        # Things come first in the vocabulary, so thing label i is things[i].
        self.cat_ids = [by_name[name] for name in things]

"""mmdet's COCO panoptic metric, scored over the vocabulary that was evaluated."""
from typing import Sequence

from mmdet.evaluation import CocoPanopticMetric
from mmengine.evaluator import BaseMetric

from openseg_core.datasets.errors import DatasetError
from openseg_core.registry import METRICS


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
    Same arguments as ``CocoPanopticMetric``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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

"""Data transforms the core adds to mmdet's."""
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import PackDetInputs

from openseg_core.registry import TRANSFORMS
from openseg_core.structures import OpenSegDataSample


@TRANSFORMS.register_module()
class SetTask(BaseTransform):
    """Tag each sample with the task it trains or tests (``results['task']``).

    Multi-task models (X-Decoder's mixed pre-training) decode a sample according to its tag;
    :class:`PackOpenSegInputs` puts it into the sample's ``task`` field.
    """

    def __init__(self, task: str):
        if not task:
            raise ValueError('SetTask needs a task name')
        self.task = task

    def transform(self, results: dict) -> dict:
        results['task'] = self.task
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(task={self.task!r})'


@TRANSFORMS.register_module()
class PackOpenSegInputs(PackDetInputs):
    """mmdet's ``PackDetInputs`` that packs an :class:`OpenSegDataSample`.

    Besides what ``PackDetInputs`` packs (image, instances, semantic map, ``meta_keys``), the
    pipeline's ``text``, ``captions`` and ``task`` become the sample's typed fields, so
    configs need not list them in ``meta_keys``.
    """

    language_fields = ('text', 'captions', 'task')

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        det_sample = packed['data_samples']
        sample = OpenSegDataSample(metainfo=det_sample.metainfo)
        sample.set_data(dict(det_sample.items()))
        for name in self.language_fields:
            if name in results:
                value = results[name]
                setattr(sample, name, list(value) if name == 'captions' else value)
        packed['data_samples'] = sample
        return packed

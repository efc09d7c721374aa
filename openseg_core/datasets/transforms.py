"""Data transforms the core adds to mmdet's."""
from mmcv.transforms import BaseTransform

from openseg_core.registry import TRANSFORMS


@TRANSFORMS.register_module()
class SetTask(BaseTransform):
    """Tag each sample with the task it trains or tests (``results['task']``).

    Multi-task models (X-Decoder's mixed pre-training) decode a sample according to its tag;
    put ``'task'`` in ``PackDetInputs``' ``meta_keys`` so it reaches the model.
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

"""Runner hooks."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop

from openseg_core.registry import HOOKS


@HOOKS.register_module()
class VocabularyHook(Hook):
    """Gives the model each phase's vocabulary from its dataset's ``thing_classes`` and
    ``stuff_classes``, so training on seen classes and testing on an open split need no
    class lists in the config."""

    priority = 'VERY_HIGH'

    @staticmethod
    def _apply(runner, loader) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        meta = loader.dataset.metainfo
        model.set_vocabulary(meta['thing_classes'], meta.get('stuff_classes', ()))

    def before_train(self, runner) -> None:
        self._apply(runner, runner.train_dataloader)

    def before_val_epoch(self, runner) -> None:
        self._apply(runner, runner.val_dataloader)

    def after_val_epoch(self, runner, metrics=None) -> None:
        # Validation inside training: back to the training vocabulary.
        if isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            self._apply(runner, runner.train_dataloader)

    def before_test_epoch(self, runner) -> None:
        self._apply(runner, runner.test_dataloader)

"""mmengine's ``Runner`` loading checkpoints through openseg's one loading path."""
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from openseg_core.registry import RUNNERS
from openseg_core.utils.checkpoint import (CheckpointError, load_model_weights,
                                           read_checkpoint)


@RUNNERS.register_module()
class OpenSegRunner(Runner):
    """A ``Runner`` whose checkpoint loading is safe and strict.

    - Files are read with ``weights_only=True`` and a bad file fails in one line
      (:func:`~openseg_core.utils.checkpoint.read_checkpoint`).
    - ``load_from`` must fit the model unless the config sets ``load_strict=False`` (the tools'
      ``--partial-load``); mmengine only logs that keys "do not match exactly", and a
      checkpoint of another config then evaluates as garbage.
    - ``resume`` always needs a checkpoint that fits and holds a training state.
    """

    _resuming = False

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list = None):
        what = 'checkpoint to resume' if self._resuming else 'checkpoint'
        checkpoint = read_checkpoint(filename, what, map_location)
        if self._resuming:
            meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
            if not (isinstance(meta, dict) and {'epoch', 'iter'} <= set(meta)
                    and 'message_hub' in checkpoint):
                raise CheckpointError(
                    f'{filename} holds weights but no training state (meta epoch/iter, message '
                    'hub): it was not written by tools/train.py, so it cannot be resumed; '
                    f'start a new run from its weights with --cfg-options load_from={filename}')
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        load_model_weights(model, checkpoint, filename,
                           strict=self._resuming or self.cfg.get('load_strict', True),
                           logger=self.logger,
                           remedy='--resume needs a checkpoint of this config' if self._resuming
                           else None)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def resume(self, filename: str, *args, **kwargs) -> None:
        self._resuming = True
        try:
            super().resume(filename, *args, **kwargs)
        finally:
            self._resuming = False

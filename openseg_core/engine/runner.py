"""mmengine's ``Runner`` loading checkpoints through openseg's one loading path, and
distributed on CPUs too."""
import datetime

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from mmengine.config import ConfigDict
from mmengine.dist import is_distributed
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from openseg_core.registry import RUNNERS
from openseg_core.utils.checkpoint import (CheckpointError, load_model_weights,
                                           read_checkpoint)


def init_cpu_process_group(dist_cfg: dict) -> None:
    """Join torchrun's processes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) without CUDA:
    gloo unless the config names another CPU backend (its ``nccl`` default is for GPUs), and
    no ``torch.cuda.set_device``, which mmengine's launcher calls whatever the backend."""
    dist_cfg = dict(dist_cfg)
    backend = dist_cfg.pop('backend', 'gloo')
    if backend == 'nccl':
        backend = 'gloo'
    if dist_cfg.get('timeout') is not None:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    torch_dist.init_process_group(backend=backend, **dist_cfg)


def check_training_state(checkpoint, filename: str) -> None:
    """Raise unless ``checkpoint`` holds what ``--resume`` needs besides weights."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not (isinstance(meta, dict) and {'epoch', 'iter'} <= set(meta)
            and 'message_hub' in checkpoint):
        raise CheckpointError(
            f'{filename} holds weights but no training state (meta epoch/iter, message '
            'hub): it was not written by tools/train.py, so it cannot be resumed; '
            f'start a new run from its weights with --cfg-options load_from={filename}')


@RUNNERS.register_module()
class OpenSegRunner(Runner):
    """A ``Runner`` whose checkpoint loading is safe and strict.

    - Files are read with ``weights_only=True`` and a bad file fails in one line
      (:func:`~openseg_core.utils.checkpoint.read_checkpoint`).
    - ``load_from`` must fit the model unless the config sets ``load_strict=False`` (the tools'
      ``--partial-load``); mmengine only logs that keys "do not match exactly", and a
      checkpoint of another config then evaluates as garbage.
    - ``resume`` always needs a checkpoint that fits and holds a training state.
    - ``launcher='pytorch'`` (``tools/dist_train.sh``) also runs without CUDA: processes join
      with gloo and the model is wrapped without device ids (mmengine's launcher calls
      ``torch.cuda.set_device`` whatever the backend, and passes the local rank as a device).
    """

    _resuming = False

    def setup_env(self, env_cfg: dict) -> None:
        if (self.distributed and not is_distributed() and self.launcher == 'pytorch'
                and not torch.cuda.is_available()):
            init_cpu_process_group(env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg, model):
        if self.distributed and not torch.cuda.is_available() and not is_model_wrapper(model):
            # DistributedDataParallel takes device ids for GPU modules only.
            model_wrapper_cfg = ConfigDict(model_wrapper_cfg or dict(
                type='MMDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False)))
            model_wrapper_cfg.device_ids = None
        return super().wrap_model(model_wrapper_cfg, model)

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list = None):
        what = 'checkpoint to resume' if self._resuming else 'checkpoint'
        checkpoint = read_checkpoint(filename, what, map_location)
        if self._resuming:
            check_training_state(checkpoint, filename)
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

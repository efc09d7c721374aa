"""Runner hooks."""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop

from openseg_core.registry import HOOKS

from .safe_checkpoint import make_portable


@HOOKS.register_module()
class VocabularyHook(Hook):
    """Gives the model (and the visualizer, for its labels) each phase's vocabulary from its
    dataset's ``thing_classes`` and ``stuff_classes``, so training on seen classes and testing
    on an open split need no class lists in the config."""

    priority = 'VERY_HIGH'

    @staticmethod
    def _apply(runner, loader) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        meta = loader.dataset.metainfo
        if 'thing_classes' not in meta:
            return  # referring or caption data: no class vocabulary to set
        model.set_vocabulary(meta['thing_classes'], meta.get('stuff_classes', ()))
        runner.visualizer.dataset_meta = meta

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


@HOOKS.register_module()
class ResumeStateHook(Hook):
    """Makes checkpoints resumable safely and exactly.

    Safely: the message hub is stored in a form ``torch.load(weights_only=True)`` reads (see
    ``safe_checkpoint``). Exactly: the torch (CPU and every CUDA device), numpy and Python RNG
    states are stored too, since point sampling in the matcher and losses draws from torch's
    generator of the device it runs on. They are put back before the first resumed
    iteration, after mmengine has fast-forwarded the dataloader (which would otherwise consume
    random numbers in the main process). A checkpoint written on a GPU resumes on a CPU
    (the CUDA states are then unused) and vice versa (the CUDA generators keep their seeds).
    In a distributed run the checkpoint holds every rank's states, and each rank resumes its
    own when the number of processes is the same.
    """

    def __init__(self):
        self._pending = None
        self._rank_states = None

    @staticmethod
    def _states() -> dict:
        states = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(),
                      python=random.getstate())
        if torch.cuda.is_available():
            states['cuda'] = torch.cuda.get_rng_state_all()
        return states

    def _gather(self) -> None:
        # Only rank 0 writes checkpoints, right after this (the checkpoint hook comes last):
        # it keeps every rank's generators, which differ once ranks draw data-dependent
        # amounts (points per matched mask), so that each rank resumes its own. A few kB.
        if get_dist_info()[1] > 1:
            self._rank_states = all_gather_object(self._states())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._gather()

    def after_train_epoch(self, runner) -> None:
        self._gather()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        make_portable(checkpoint)
        checkpoint['rng_state'] = self._states()
        if self._rank_states is not None:
            checkpoint['rng_state']['ranks'] = self._rank_states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_state')
        rank, world_size = get_dist_info()
        ranks = states.get('ranks') if states else None
        # A run resumed with another number of processes continues from rank 0's.
        self._pending = ranks[rank] if ranks and len(ranks) == world_size else states

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:
            torch.set_rng_state(self._pending['torch'])
            np.random.set_state(self._pending['numpy'])
            random.setstate(self._pending['python'])
            cuda_states = self._pending.get('cuda')
            if cuda_states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
            self._pending = None

"""Training large models sharded across processes: mmengine's ``FlexibleRunner`` with FSDP,
keeping openseg's checkpoint rules.

A config that sets ``strategy=`` trains with :class:`OpenSegFlexibleRunner` (``tools/train.py``
picks it); ``openseg_core::_base_/strategies/fsdp.py`` is the fragment to add::

    _base_ = ['odise::odise_label_coco_paper.py', 'openseg_core::_base_/strategies/fsdp.py']
    strategy = dict(wrap_blocks=['Mask2FormerTransformerDecoderLayer'])

What :class:`OpenSegFSDPStrategy` adds to mmengine's ``FSDPStrategy``:

- **Frozen parts stay whole on every process** (FSDP's ``ignored_states``): the parameters of
  every module frozen by :meth:`~openseg_core.models.base.FrozenPartsMixin.freeze`, except
  the adapters trained inside one (LoRA), which FSDP manages. FSDP shards the trainable
  weights, their gradients and the optimizer state; frozen weights have no gradients nor
  optimizer state, so they cost their own size per process, as under DDP. Sharding them is
  not offered: a unit gathers its weights only when its own ``forward`` runs, while the large
  frozen modules run piece by piece (T5's encoder, decoder and head are called separately;
  ODISE reads the UNet's inner blocks and stops it early), and FSDP's full state dict fails
  for a part frozen as a whole (``freeze('')``: its hook drops weights FSDP expects).
- **Scalar parameters** (a learned temperature) cannot be flattened by FSDP: they stay whole
  too, and the strategy averages their gradients over the processes before each step.
- **Units by class name** (``wrap_blocks``): each module of a listed class becomes its own FSDP
  unit (all-gathered for its forward only); the rest of the model is the root unit. A name
  that matches no module holding trainable weights is an error, not a silent single unit.
- **Checkpoints are openseg's**: the full state dict, gathered on rank 0 and written as one
  file that ``tools/test.py``, ``Segmenter`` and a run without FSDP load; frozen parts left out
  (their SHA-256 recorded); read with ``weights_only``; loaded strictly through
  :func:`~openseg_core.utils.checkpoint.load_model_weights` against the weight names listed
  before sharding. ``--resume`` needs a training state and loads strictly. The optimizer state
  is FSDP's (keyed by parameter name): a run resumes under FSDP only.
- **Optimizer state**: saved with FSDP's full optimizer state dict; loaded with the arguments
  in the order torch 2.x takes them (mmengine 0.10.7 passes torch 1.x's); on a CPU without the
  offload that would save every state of a unit as its last one (torch 2.14 copies them out of
  one shared buffer with ``.cpu()``, a no-op there).
- **Gradient clipping over the whole model**: mmengine's ``OptimWrapper`` would clip each
  process's shard by the shard's own norm; ``clip_grad=dict(max_norm=...)`` uses FSDP's
  global norm instead.
- **CPUs**: without CUDA, processes join with gloo (as :class:`~.OpenSegRunner` does) and FSDP
  runs on the CPU (``device_id=cpu``); that is how the tests run it.
"""
import copy
import functools
import os
import types
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.distributed as torch_dist
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.model import BaseDataPreprocessor, is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import FlexibleRunner
from mmengine._strategy import FSDPStrategy
from torch import nn
from torch.distributed.fsdp import (FullOptimStateDictConfig, FullyShardedDataParallel,
                                    StateDictType)

from openseg_core.registry import RUNNERS, STRATEGIES
from openseg_core.utils.checkpoint import (load_model_weights, model_weights,
                                           read_checkpoint)

from .runner import check_training_state, init_cpu_process_group


class FSDPPlan:
    """Which parameters FSDP leaves whole and which modules become units, for ``model``.

    Attributes:
        ignored: ``{name: parameter}`` kept whole on every process, out of FSDP: the frozen
            parts, and the scalar (0-d) parameters, which FSDP cannot flatten (a learned
            temperature).
        replicated: the trainable ones among them, whose gradients the strategy averages
            over the processes itself (FSDP does it for the weights it manages).
        units: names of the modules wrapped as FSDP units of their own (``wrap_blocks``
            matches holding at least one parameter FSDP manages), outermost first.
    """

    def __init__(self, model: nn.Module, wrap_blocks: Sequence[str] = ()):
        from openseg_core.models.base.frozen import FrozenPartsMixin
        ignored: Dict[int, Tuple[str, nn.Parameter]] = {}
        for part_name, part in model.named_modules():
            if not isinstance(part, FrozenPartsMixin):
                continue
            for name in part.frozen_modules:
                frozen = part.get_submodule(name) if name else part
                prefix = '.'.join(p for p in (part_name, name) if p)
                for key, param in frozen.named_parameters():
                    if not part._is_trainable_key(name, key):
                        ignored[id(param)] = (f'{prefix}.{key}' if prefix else key, param)
        for name, param in model.named_parameters():
            if param.dim() == 0:
                ignored.setdefault(id(param), (name, param))
        self.ignored = dict(ignored.values())
        self.replicated = {k: p for k, p in self.ignored.items() if p.requires_grad}
        self.units: List[str] = []
        matched: Set[str] = set()
        for name, module in model.named_modules():
            kind = type(module).__name__
            if kind in wrap_blocks and any(id(p) not in ignored for p in module.parameters()):
                self.units.append(name)
                matched.add(kind)
        unmatched = [kind for kind in wrap_blocks if kind not in matched]
        if unmatched:
            raise ValueError(
                f'strategy.wrap_blocks names {unmatched}, but {type(model).__name__} has no '
                'module of that class holding trainable weights (frozen parts are not '
                'sharded); name the classes of its transformer layers, e.g. '
                f'{_layer_classes(model, ignored)}')

    def wrap_policy(self, model: nn.Module):
        """FSDP's ``auto_wrap_policy`` (its function form, which mmengine's wrapper takes)
        wrapping exactly :attr:`units`."""
        units = {model.get_submodule(name) for name in self.units}

        def policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
            return recurse or module in units

        return policy


def _layer_classes(model: nn.Module, ignored: dict) -> List[str]:
    """Class names of the modules inside ``ModuleList`` s (layer stacks) that hold weights
    FSDP would manage: the candidates for ``wrap_blocks``, for messages."""
    found = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            for child in module:
                kind = type(child).__name__
                if kind not in found and any(id(p) not in ignored for p in child.parameters()):
                    found.append(kind)
    return found[:6]


def _average_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average the gradients of parameters FSDP does not manage over the processes (a process
    where one got none counts as zeros; one that none of them got stays ``None``)."""
    if not params or not torch_dist.is_initialized():
        return
    grads = torch.stack([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                         for p in params]).float()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                       device=grads.device)
    flat = torch.cat([grads.reshape(-1), has])
    torch_dist.all_reduce(flat)
    grads, has = flat[:grads.numel()].view_as(grads), flat[grads.numel():]
    for param, grad, got in zip(params, grads / torch_dist.get_world_size(), has):
        if got > 0:
            param.grad = grad.reshape(param.shape).to(param.dtype)


def _clip_sharded_grad_norm(model: FullyShardedDataParallel, params, max_norm: float,
                            norm_type: float = 2.0, **_) -> torch.Tensor:
    """``clip_grad_norm_`` for a sharded model: the norm over every process's shard (FSDP's
    own), not the local shard's. ``params`` are the optimizer's, which are all the model's
    trainable ones."""
    return model.clip_grad_norm_(max_norm, norm_type)


def _averaging_step(step, params: Sequence[nn.Parameter]):
    """``OptimWrapper.step`` averaging the gradients of ``params`` first."""

    def averaging_step(wrapper, **kwargs) -> None:
        _average_gradients(params)
        step(wrapper, **kwargs)

    return averaging_step


@STRATEGIES.register_module()
class OpenSegFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` with openseg's frozen parts, checkpoints and CPU runs (see
    the module's docstring).

    Args:
        wrap_blocks: class names of the modules (transformer layers) that become FSDP units
            of their own; the rest is the root unit.
        model_wrapper: ``MMFullyShardedDataParallel`` options (``sharding_strategy``,
            ``mixed_precision``, ``sync_module_states``...). ``auto_wrap_policy`` and
            ``ignored_modules`` / ``ignored_states`` are this strategy's to set.
        state_dict_cfg: ``'full'`` only: openseg's checkpoints are whole-model files (FSDP's
            ``'local'`` shards hold flattened frozen weights and do not load without FSDP).
        skip_init_weights, sync_bn, work_dir, experiment_name, env_kwargs, log_kwargs,
            auto_scale_lr: as mmengine's ``FSDPStrategy`` (the runner fills the last five).
            Activation checkpointing is the model's own (``with_cp`` in its config).
    """

    def __init__(self, *, wrap_blocks: Sequence[str] = (), model_wrapper: Optional[dict] = None,
                 state_dict_cfg: Union[str, dict] = 'full', skip_init_weights: bool = False,
                 sync_bn: Optional[str] = None,
                 work_dir: str = 'work_dirs', experiment_name: Optional[str] = None,
                 env_kwargs: Optional[dict] = None, log_kwargs: Optional[dict] = None,
                 auto_scale_lr: Optional[dict] = None):
        if state_dict_cfg != 'full':
            raise ValueError(
                f"strategy.state_dict_cfg={state_dict_cfg!r}: openseg's FSDP strategy writes "
                "whole-model checkpoints only ('full'), which load with or without FSDP")
        model_wrapper = dict(model_wrapper or dict(type='MMFullyShardedDataParallel'))
        taken = {'auto_wrap_policy', 'ignored_modules', 'ignored_states', 'ignored_parameters',
                 'device_id'} & set(model_wrapper)
        if taken:
            raise ValueError(
                f'strategy.model_wrapper sets {sorted(taken)}, which OpenSegFSDPStrategy '
                'derives from the model: name the transformer layers in strategy.wrap_blocks; '
                'frozen parts are never sharded')
        if (env_kwargs or {}).get('launcher') == 'none':
            raise ValueError('FSDP shards the model across processes: launch them with '
                             'tools/dist_train.sh CONFIG N (one process per GPU)')
        self.wrap_blocks = list(wrap_blocks)
        self._resuming = False
        super().__init__(model_wrapper=model_wrapper, skip_init_weights=skip_init_weights,
                         state_dict_cfg=state_dict_cfg, sync_bn=sync_bn,
                         work_dir=work_dir, experiment_name=experiment_name,
                         env_kwargs=env_kwargs, log_kwargs=log_kwargs,
                         auto_scale_lr=auto_scale_lr)

    def _setup_distributed(self, launcher: str = 'pytorch', backend: str = 'nccl',
                           **kwargs) -> None:
        if launcher == 'pytorch' and not torch.cuda.is_available() and not is_distributed():
            init_cpu_process_group(dict(backend=backend, **kwargs))
        else:
            super()._setup_distributed(launcher, backend, **kwargs)

    def build_model(self, model: Union[nn.Module, dict]) -> nn.Module:
        model = super().build_model(model)
        # Listed while the weights are whole: after sharding, a parameter outside the forward
        # is this process's shard (often empty).
        self.model_weights = model_weights(model)
        return model

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        if is_model_wrapper(model):
            return model
        device = get_device()
        for module in model.modules():
            if isinstance(module, BaseDataPreprocessor):
                module.to(device)
        plan = FSDPPlan(model, self.wrap_blocks)
        for param in plan.ignored.values():
            # FSDP moves the weights it manages to the device only.
            param.data = param.data.to(device)
        self.plan = plan
        cfg = copy.deepcopy(self.model_wrapper)
        cfg.update(auto_wrap_policy=plan.wrap_policy(model),
                   ignored_states=list(plan.ignored.values()) or None)
        device_id = int(os.environ['LOCAL_RANK']) if device == 'cuda' else torch.device(device)
        if device == 'cpu' and cfg.pop('sync_module_states', False):
            # FSDP's own sync refuses CPU tensors; the same broadcast of rank 0's weights.
            for tensor in list(model.parameters()) + list(model.buffers()):
                torch_dist.broadcast(tensor.data, src=0)
        model = MODEL_WRAPPERS.build(cfg, default_args=dict(module=model, device_id=device_id))
        if device == 'cpu':
            # torch 2.14 gathers every optimizer state (exp_avg, exp_avg_sq...) of a unit into
            # one buffer and copies it out with `.cpu()` when offloading, a no-op on a CPU:
            # all of them would be saved as the last one. Without offloading it clones.
            self.optim_state_dict_config = FullOptimStateDictConfig(offload_to_cpu=False,
                                                                    rank0_only=True)
        model.set_state_dict_type(model, self.state_dict_type, self.state_dict_config,
                                  self.optim_state_dict_config)
        self.logger.info(
            f'FSDP: {len(plan.units)} units of their own ({", ".join(self.wrap_blocks)}) '
            f'besides the root; {sum(p.numel() for p in plan.ignored.values()) / 1e6:.1f} M '
            'parameters kept whole on every process (frozen parts; scalars: '
            f'{", ".join(plan.replicated) or "none"} trained, averaged by the strategy)')
        return model

    def build_optim_wrapper(self, optim_wrapper, model: Optional[nn.Module] = None):
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        wrappers = wrapper.values() if isinstance(wrapper, OptimWrapperDict) else [wrapper]
        replicated = list(self.plan.replicated.values())
        for each in wrappers:
            if getattr(each, 'clip_func', None) is torch.nn.utils.clip_grad_norm_:
                each.clip_func = functools.partial(_clip_sharded_grad_norm, model)
            if replicated:
                # Before clipping and the update, as DDP's averaging would have done. A bound
                # method: mmengine's schedulers wrap `step` and need its instance.
                each.step = types.MethodType(_averaging_step(type(each).step, replicated), each)
        return wrapper

    def load_checkpoint(self, filename: str, *, map_location='cpu', strict: bool = True,
                        revise_keys: list = (), callback=None) -> dict:
        """Read ``filename`` safely and load its weights into the sharded model through
        openseg's one loading path (strict unless ``strict=False``; always when resuming).
        Returns the checkpoint without its ``state_dict``."""
        what = 'checkpoint to resume' if self._resuming else 'checkpoint'
        if map_location == 'default':
            map_location = get_device()
        checkpoint = read_checkpoint(filename, what, map_location)
        if self._resuming:
            check_training_state(checkpoint, filename)
        if callback is not None:
            callback(checkpoint)
        assert self.state_dict_type == StateDictType.FULL_STATE_DICT
        # Every process loads the whole state dict; FSDP keeps each one's shard.
        load_model_weights(self.model, checkpoint, filename, strict=self._resuming or strict,
                           logger=self.logger, weights=self.model_weights,
                           remedy='--resume needs a checkpoint of this config'
                           if self._resuming else None)
        checkpoint.pop('state_dict', None)
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def load_optim_state_dict(self, state_dict: dict) -> None:
        # mmengine 0.10.7 passes the arguments in torch 1.x's order (state dict first).
        optimizer = self.optim_wrapper.optimizer
        self.optim_wrapper.load_state_dict(
            FullyShardedDataParallel.optim_state_dict_to_load(self.model, optimizer,
                                                              state_dict))

    def resume(self, filename: str, **kwargs) -> dict:
        self._resuming = True
        try:
            return super().resume(filename, **kwargs)
        finally:
            self._resuming = False


@RUNNERS.register_module()
class OpenSegFlexibleRunner(FlexibleRunner):
    """mmengine's ``FlexibleRunner`` for configs with ``strategy=`` (``tools/train.py``
    builds it then), loading ``load_from`` strictly unless ``load_strict=False``
    (``--partial-load``), as :class:`~.OpenSegRunner` does."""

    def build_strategy(self, strategy=None, *args, **kwargs):
        kind = strategy.get('type') if isinstance(strategy, dict) else type(strategy)
        cls = STRATEGIES.get(kind) if isinstance(kind, str) else kind
        if not (isinstance(cls, type) and issubclass(cls, OpenSegFSDPStrategy)):
            raise ValueError(
                f'strategy={kind!r}: openseg trains with a strategy only for FSDP '
                "(type='OpenSegFSDPStrategy', openseg_core::_base_/strategies/fsdp.py); "
                'data-parallel training needs none: tools/dist_train.sh CONFIG N')
        return super().build_strategy(strategy, *args, **kwargs)

    def load_checkpoint(self, filename: str, map_location='cpu', strict: bool = False,
                        revise_keys: list = ()):
        def callback(checkpoint):
            self.call_hook('after_load_checkpoint', checkpoint=checkpoint)

        return self.strategy.load_checkpoint(
            filename, map_location=map_location, strict=self.cfg.get('load_strict', True),
            revise_keys=revise_keys, callback=callback)

"""The optimizer of a model with frozen parts."""
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from openseg_core.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenAwareOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor (``paramwise_cfg`` and all), leaving out parameters
    that do not require gradients.

    mmengine keeps frozen parameters in the optimizer's groups; they take no step, but a
    frozen 1.5 B-parameter UNet or language model then sits in every group, and unfreezing a
    part by mistake would train it. openseg's frozen-part convention keeps them out.

    A parameter shared by several modules (T5's tied input embeddings) is put in one group
    only: with ``paramwise_cfg`` mmengine gives it one group per module, which the optimizer
    refuses ("some parameters appear in more than one parameter group").
    """

    def add_params(self, params: list, module: nn.Module, prefix: str = '', **kwargs) -> None:
        super().add_params(params, module, prefix=prefix, **kwargs)
        if prefix:  # the recursion's inner calls; the outermost one deduplicates
            return
        seen = set()
        unique = []
        for group in params:
            if id(group['params'][0]) not in seen:
                seen.add(id(group['params'][0]))
                unique.append(group)
        params[:] = unique

    def __call__(self, model: nn.Module) -> OptimWrapper:
        wrapper = super().__call__(model)
        groups = wrapper.optimizer.param_groups
        for group in groups:
            group['params'] = [p for p in group['params'] if p.requires_grad]
        groups[:] = [g for g in groups if g['params']]
        if not groups:
            raise ValueError('every parameter of the model is frozen: nothing to train')
        return wrapper

"""Batch norms in evaluation mode folded into the convolutions before them.

A batch norm that uses its running statistics is a per-channel affine map, so after a
convolution it is the convolution with scaled weights and a bias. torch's CPU batch norm
costs a pass over the map: the 53 of mmdet's ResNet-50 took 31 ms of its 155 ms at 512 x 512
on 2 cores (NHWC), the 4 at stride 4 (256 channels) 4 ms each.

Only pairs whose data flow is known are folded: consecutive ``Conv2d`` / ``BatchNorm2d``
children of an ``nn.Sequential`` (mmdet's down-sampling branches and deep stems), and mmdet's
``ResNet`` stem and residual blocks, whose forwards apply ``norm{i}`` to ``conv{i}``'s output
and nothing else.
"""
from torch import Tensor, nn

from .fast_conv import FastConv2d
from .inference_cache import inference_cache
from .linear import needs_gradient


# nn.Conv2d named among the bases: mmengine's initialisers match a layer by its class's
# direct bases' names (``init_cfg=dict(type='Kaiming', layer='Conv2d')``).
class FoldedConv2d(FastConv2d, nn.Conv2d):
    """``nn.Conv2d`` (same parameters) that applies the batch norm after it, when that norm
    uses its running statistics, by scaling its weights: ``w * g / sqrt(v + eps)``, bias
    ``(b - m) * g / sqrt(v + eps) + beta``. Made by :func:`fold_batch_norm`.

    With gradients the folded weights are computed in the forward, so the parameters get the
    gradients of the unfolded pair; without them they are kept until a source changes.
    """

    def forward(self, x: Tensor) -> Tensor:
        norm = _folding_partner(self)
        if norm is None:
            return super().forward(x)
        sources = [t for t in (self.weight, self.bias, norm.weight, norm.bias,
                               norm.running_mean, norm.running_var) if t is not None]
        if needs_gradient(*sources):
            weight, bias = _folded(self, norm)
        else:
            weight, bias = inference_cache(self).get('folded_norm', sources,
                                                     lambda: _folded(self, norm))
        return self._conv_forward(x, weight, bias)


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters and buffers) whose convolution applies it in
    evaluation mode (:class:`FoldedConv2d`): then its forward passes the input through."""

    def forward(self, x: Tensor) -> Tensor:
        if _folding_partner(self) is None:
            return super().forward(x)
        return x


def _folding_partner(module: nn.Module):
    """The other half of ``module``'s folded pair while the pair folds (the norm in evaluation
    mode, both still where they were folded), else None.

    The pair is looked up in its parent, not held: a pass that replaces one half (torch's
    ``convert_sync_batchnorm`` swaps every batch norm) must leave the other half unfolded,
    or the norm would be applied twice or not at all. (``copy.deepcopy`` of one half alone
    copies its parent along, so that copy still folds: take the pair, or the parent.)"""
    parent, conv_name, norm_name = module.__dict__['_folded_pair']
    conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
    if type(conv) is not FoldedConv2d or type(norm) is not FoldedBatchNorm2d or norm.training:
        return None
    if module is conv:
        return norm
    return conv if module is norm else None  # a copy of one half alone


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d):
    """``conv``'s weight and bias with ``norm`` (running statistics) applied."""
    scale = norm.running_var.add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    bias = -norm.running_mean if conv.bias is None else conv.bias - norm.running_mean
    bias = bias * scale
    if norm.bias is not None:
        bias = bias + norm.bias
    # In the weight's memory format (NHWC in a channels-last model).
    return conv.weight * scale.view(-1, 1, 1, 1), bias


def fold_batch_norm(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    """Make ``parent``'s child ``conv_name`` apply its child ``norm_name`` in evaluation mode
    (class swaps in place, state-dict keys unchanged) when both are plain (``nn.Conv2d``, or
    :class:`FastConv2d` from an earlier conversion; ``nn.BatchNorm2d`` with running
    statistics and matching channels) and ``parent``'s forward gives the norm the
    convolution's output and nothing else; return whether they were folded."""
    conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
    if (type(conv) not in (nn.Conv2d, FastConv2d) or type(norm) is not nn.BatchNorm2d
            or not norm.track_running_stats or norm.running_mean is None
            or norm.num_features != conv.out_channels):
        return False
    pair = (parent, conv_name, norm_name)
    conv.__class__, norm.__class__ = FoldedConv2d, FoldedBatchNorm2d
    conv.__dict__['_folded_pair'] = norm.__dict__['_folded_pair'] = pair
    return True


def convert_batch_norm_folding(module: nn.Module) -> nn.Module:
    """Fold, in place, every batch norm inside ``module`` that follows a convolution in a known
    data flow (module docstring) into that convolution; return ``module``."""
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

    for child in module.modules():
        if isinstance(child, nn.Sequential):
            names = list(child._modules)
            for conv_name, norm_name in zip(names, names[1:]):
                fold_batch_norm(child, conv_name, norm_name)
        elif isinstance(child, ResNet) and not child.deep_stem:
            fold_batch_norm(child, 'conv1', child.norm1_name)
        elif isinstance(child, (BasicBlock, Bottleneck)):
            for i in (1, 2, 3):
                if hasattr(child, f'conv{i}'):
                    fold_batch_norm(child, f'conv{i}', getattr(child, f'norm{i}_name'))
    return module

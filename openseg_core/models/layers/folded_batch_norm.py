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
import torch
from torch import Tensor, nn

from .inference_cache import inference_cache


class FoldedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) that applies the batch norm after it, when that norm
    uses its running statistics, by scaling its weights: ``w * g / sqrt(v + eps)``, bias
    ``(b - m) * g / sqrt(v + eps) + beta``. Made by :func:`fold_batch_norm`.

    With gradients the folded weights are computed in the forward, so the parameters get the
    gradients of the unfolded pair; without them they are kept until a source changes.
    """

    def forward(self, x: Tensor) -> Tensor:
        norm = self.__dict__['_folded_norm']
        if norm.training:  # batch statistics: nothing to fold
            return super().forward(x)
        sources = (self.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var)
        if self.bias is not None:
            sources += (self.bias, )
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            weight, bias = self._folded()
        else:
            weight, bias = inference_cache(self).get('folded_norm', sources, self._folded)
        return self._conv_forward(x, weight, bias)

    def _folded(self):
        norm = self.__dict__['_folded_norm']
        scale = norm.running_var.add(norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight
        bias = -norm.running_mean if self.bias is None else self.bias - norm.running_mean
        bias = bias * scale
        if norm.bias is not None:
            bias = bias + norm.bias
        # In the weight's memory format (NHWC in a channels-last model).
        return self.weight * scale.view(-1, 1, 1, 1), bias


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters and buffers) whose convolution applies it in
    evaluation mode (:class:`FoldedConv2d`): then its forward passes the input through."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        return x


def fold_batch_norm(conv: nn.Module, norm: nn.Module) -> bool:
    """Make ``conv`` apply ``norm`` in evaluation mode (class swaps in place, state-dict keys
    unchanged) when both are plain (``nn.Conv2d``, ``nn.BatchNorm2d`` with running
    statistics and matching channels); return whether they were."""
    if (type(conv) is not nn.Conv2d or type(norm) is not nn.BatchNorm2d
            or not norm.track_running_stats or norm.running_mean is None
            or norm.num_features != conv.out_channels):
        return False
    conv.__class__ = FoldedConv2d
    conv.__dict__['_folded_norm'] = norm
    norm.__class__ = FoldedBatchNorm2d
    return True


def convert_batch_norm_folding(module: nn.Module) -> nn.Module:
    """Fold, in place, every batch norm inside ``module`` that follows a convolution in a known
    data flow (module docstring) into that convolution; return ``module``."""
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

    for child in module.modules():
        if isinstance(child, nn.Sequential):
            layers = list(child)
            for conv, norm in zip(layers, layers[1:]):
                fold_batch_norm(conv, norm)
        elif isinstance(child, ResNet) and not child.deep_stem:
            fold_batch_norm(child.conv1, child.norm1)
        elif isinstance(child, (BasicBlock, Bottleneck)):
            for i in (1, 2, 3):
                if hasattr(child, f'conv{i}'):
                    fold_batch_norm(getattr(child, f'conv{i}'), getattr(child, f'norm{i}'))
    return module

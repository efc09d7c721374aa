"""Batch norms folded into their convolutions: mmdet ResNets' outputs and gradients kept."""
import copy

import pytest
import torch
from mmdet.models.backbones import ResNet, ResNetV1d
from torch import nn

from openseg_core.models.layers import (FoldedBatchNorm2d, FoldedConv2d,
                                        convert_batch_norm_folding, fold_batch_norm)

pytestmark = pytest.mark.usefixtures('single_thread')


def _randomise_norms(model: nn.Module) -> None:
    """Running statistics and affine parameters far from the identity, as trained ones are."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))


def _count_batch_norms(fn) -> int:
    with torch.profiler.profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == 'aten::batch_norm')


@pytest.mark.parametrize('backbone', [
    lambda: ResNet(depth=50, base_channels=8, norm_cfg=dict(type='BN', requires_grad=False),
                   norm_eval=True),
    lambda: ResNetV1d(depth=18, base_channels=8),  # deep stem, average-pooled shortcut
], ids=['resnet50_frozen_norms', 'resnet18_v1d'])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_folded_resnet_gives_the_outputs_of_the_unfolded_one(backbone, channels_last):
    torch.manual_seed(0)
    reference = backbone()
    _randomise_norms(reference)
    model = copy.deepcopy(reference)
    convert_batch_norm_folding(model)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is FoldedBatchNorm2d for m in norms)  # every one folded
    assert model.state_dict().keys() == reference.state_dict().keys()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in (model, reference):
        m.eval()
        m.to(memory_format=fmt)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=fmt)
    with torch.no_grad():
        expected, outputs = reference(x), model(x)
        assert _count_batch_norms(lambda: model(x)) == 0
        for _ in range(2):  # the second call reads the kept weights
            for out, exp in zip(model(x), expected):
                torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)
    for out, exp in zip(outputs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


def test_training_with_frozen_norms_gets_the_gradients_of_the_unfolded_pair():
    torch.manual_seed(0)
    reference = ResNet(depth=18, base_channels=8, norm_eval=True)  # norms train their affines
    _randomise_norms(reference)
    model = convert_batch_norm_folding(copy.deepcopy(reference))
    reference.train()
    model.train()  # norm_eval: the norms stay in evaluation mode, so they fold
    x = torch.randn(2, 3, 64, 64)
    for m in (reference, model):
        sum(o.square().mean() for o in m(x)).backward()
    grads = dict(reference.named_parameters())
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, rtol=1e-3, atol=1e-5,
                                   msg=name)


def test_norms_that_use_batch_statistics_are_not_folded_away():
    torch.manual_seed(0)
    reference = ResNet(depth=18, base_channels=8, norm_eval=False)
    model = convert_batch_norm_folding(copy.deepcopy(reference))
    reference.train()
    model.train()
    x = torch.randn(2, 3, 32, 32)
    for out, exp in zip(model(x), reference(x)):
        torch.testing.assert_close(out, exp, rtol=0, atol=0)
    # Both updated their running statistics alike.
    torch.testing.assert_close(model.state_dict(), reference.state_dict(), rtol=0, atol=0)


def test_kept_weights_follow_a_loaded_state_dict():
    torch.manual_seed(0)
    pair = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)).eval()
    reference = copy.deepcopy(pair)
    assert fold_batch_norm(pair, '0', '1') and type(pair[0]) is FoldedConv2d
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        pair(x)  # keeps the folded weights of the initial statistics
        state = reference.state_dict()
        state['1.running_var'] = torch.rand(6) + 0.5
        state['1.running_mean'] = torch.randn(6)
        for m in (pair, reference):
            m.load_state_dict(state)
        torch.testing.assert_close(pair(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('replaced', ['norm', 'conv'])
def test_a_pair_with_one_half_replaced_is_applied_once(replaced):
    """torch's ``convert_sync_batchnorm`` replaces every batch norm (sharing its tensors); a
    pass may replace convolutions too. The other half must then stop folding."""
    torch.manual_seed(0)
    reference = ResNet(depth=18, base_channels=8, frozen_stages=1)
    _randomise_norms(reference)
    model = convert_batch_norm_folding(copy.deepcopy(reference))
    block = model.layer1[0]
    if replaced == 'norm':
        old = block.norm1
        new = nn.BatchNorm2d(old.num_features)
        new.weight, new.bias = old.weight, old.bias
        new.running_mean, new.running_var = old.running_mean, old.running_var
        setattr(block, block.norm1_name, new)
    else:
        old = block.conv1
        new = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride,
                        old.padding, bias=False)
        new.weight = old.weight
        block.conv1 = new
    for m in (model, reference):
        m.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for out, exp in zip(model(x), reference(x)):
            torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


def test_only_plain_pairs_are_folded():
    def pair(conv, norm):
        return nn.Sequential(conv, norm)

    no_statistics = nn.BatchNorm2d(6, track_running_stats=False)
    assert not fold_batch_norm(pair(nn.Conv2d(4, 6, 1), no_statistics), '0', '1')
    assert not fold_batch_norm(pair(nn.Conv2d(4, 6, 1), nn.GroupNorm(2, 6)), '0', '1')
    assert not fold_batch_norm(pair(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(5)), '0', '1')
    unrelated = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))  # norm first
    convert_batch_norm_folding(unrelated)
    assert type(unrelated[0]) is nn.BatchNorm2d

"""Adapters trained inside a frozen pretrained module (LoRA): optimised, saved, reloaded."""
import torch
from mmengine.model import BaseModule
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import get_state_dict
from torch import nn

from openseg_core.models import SOURCE_KEY
from openseg_core.models.base import FrozenPartsMixin


class Adapted(nn.Module):
    """A pretrained linear layer with a low-rank adapter beside it."""

    def __init__(self):
        super().__init__()
        self.base = nn.Linear(4, 4)
        self.lora_A = nn.Parameter(torch.randn(2, 4))
        self.lora_B = nn.Parameter(torch.zeros(4, 2))
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        return self.base(x) + self.dropout(x) @ self.lora_A.T @ self.lora_B.T


class Part(FrozenPartsMixin, BaseModule):
    def __init__(self, source):
        super().__init__()
        self.lm = Adapted()
        state = torch.load(source, weights_only=True)
        self.lm.base.load_state_dict(state)
        self.freeze('lm', source=source, trainable=[r'lora_'])
        self.head = nn.Linear(4, 1)


def test_adapters_train_and_are_saved_while_the_rest_stays_frozen(tmp_path):
    source = tmp_path / 'base.pth'
    torch.save(nn.Linear(4, 4).state_dict(), source)
    part = Part(str(source)).train()
    assert part.lm.training and part.lm.dropout.training  # dropout applies while adapting
    assert not part.lm.base.weight.requires_grad and part.lm.lora_A.requires_grad
    wrapper = build_optim_wrapper(part, dict(constructor='FrozenAwareOptimWrapperConstructor',
                                             optimizer=dict(type='SGD', lr=0.1)))
    optimised = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert optimised == {id(part.lm.lora_A), id(part.lm.lora_B), id(part.head.weight),
                         id(part.head.bias)}

    state = get_state_dict(part)
    assert set(state) == {'lm.lora_A', 'lm.lora_B', f'lm.{SOURCE_KEY}', 'head.weight',
                          'head.bias'}
    with torch.no_grad():
        part.lm.lora_B.add_(1.0)
    reloaded = Part(str(source))
    result = reloaded.load_state_dict(get_state_dict(part), strict=True)
    assert not result.missing_keys
    torch.testing.assert_close(reloaded.lm.lora_B, part.lm.lora_B)

    # A checkpoint without the adapters misses them (they are not in the pretrained file).
    partial = {k: v for k, v in get_state_dict(part).items() if 'lora_' not in k}
    result = Part(str(source)).load_state_dict(partial, strict=False)
    assert sorted(result.missing_keys) == ['lm.lora_A', 'lm.lora_B']

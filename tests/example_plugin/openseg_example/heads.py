import torch
from torch import Tensor, nn

from openseg_core.models.interfaces import contract, expect_shape, implements
from openseg_core.registry import plugin_registries

MODELS = plugin_registries('example').MODELS


@contract('example.Scaler')
def check_scaler(part) -> None:
    """``(B, Q, C)`` -> ``(B, Q, C)``, ``scale`` times its input."""
    x = torch.randn(2, 3, 4)
    out = part(x)
    expect_shape(out, (2, 3, 4), 'output')
    torch.testing.assert_close(out, x * part.scale)


@implements('example.Scaler', example=dict(scale=3.0))
@MODELS.register_module()
class ScaledHead(nn.Module):
    """Multiplies its ``(B, Q, C)`` input by ``scale``."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

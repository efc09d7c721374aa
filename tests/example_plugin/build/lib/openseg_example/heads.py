from torch import Tensor, nn

from openseg_core.registry import plugin_registries

MODELS = plugin_registries('example').MODELS


@MODELS.register_module()
class ScaledHead(nn.Module):
    """Multiplies its ``(B, Q, C)`` input by ``scale``."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

"""PixelLLM's trace head: per token, the points of the region the word talks about."""
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import (contract, expect, expect_shape, implements)

from ..registry import MODELS
from .flax_init import lecun_normal_


@contract('pixelllm.TraceHead')
def check_trace_head(part) -> None:
    """``(B, T, D)`` hidden states -> ``(B, T, P, 2)`` points in ``[0, 1]`` coordinates of
    the image for states near zero, position by position (no mixing across tokens)."""
    import torch
    part.eval()
    hidden = torch.randn(2, 5, part.in_channels)
    with torch.no_grad():
        points = part(hidden)
        alone = part(hidden[:, 2:3])
    expect_shape(points, (2, 5, part.num_points, 2), 'points')
    expect(torch.allclose(points[:, 2:3], alone, atol=1e-5),
           'a token\'s points must depend on its own state only')


@implements('pixelllm.TraceHead', example=dict(in_channels=16, hidden_channels=8))
@MODELS.register_module()
class TraceHead(BaseModule):
    """LayerNorm, ``depth - 1`` x (Linear + GELU), Linear -> ``num_points`` points per token.

    The official head (``MlpPointPredictor``: pre-norm, depth 4, width 512, GELU, 2 points)
    maps its raw outputs by ``(x + 1) / 2`` with neither sigmoid nor clamp, so points may
    leave the image; PixelLLM scales them by the image size to pixels. Its last layer also
    outputs two unused logits per point, which are left out here.

    Args:
        in_channels: width ``D`` of the language model's hidden states.
        hidden_channels: width of the MLP.
        depth: number of linear layers.
        num_points: points per token (2: the corners of the word's box).
    """

    def __init__(self, in_channels: int, hidden_channels: int = 512, depth: int = 4,
                 num_points: int = 2, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.num_points = num_points
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        layers = []
        width = in_channels
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden_channels), nn.GELU()]
            width = hidden_channels
        layers.append(nn.Linear(width, num_points * 2))
        self.mlp = nn.Sequential(*layers)
        lecun_normal_(self.mlp)

    def forward(self, hidden: Tensor) -> Tensor:
        """``(..., D)`` -> ``(..., P, 2)`` ``(x, y)`` as fractions of the image's width and
        height."""
        out = self.mlp(self.norm(hidden))
        return (out.view(*out.shape[:-1], self.num_points, 2) + 1) * 0.5

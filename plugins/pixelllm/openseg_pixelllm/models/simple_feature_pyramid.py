"""ViTDet's simple feature pyramid: the multi-scale maps a dense head needs, from one map."""
from typing import Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import contract, expect, expect_shape, implements

from ..registry import MODELS


@contract('pixelllm.FeaturePyramid')
def check_feature_pyramid(part) -> None:
    """``(B, C_in, h, w)`` -> one ``(B, C_out, h * s, w * s)`` map per scale ``s``."""
    import torch
    part.eval()
    with torch.no_grad():
        out = part(torch.randn(2, part.in_channels, 8, 8))
    expect(len(out) == len(part.scales), f'{len(out)} maps for scales {part.scales}')
    for scale, feat in zip(part.scales, out):
        size = int(8 * scale)
        expect_shape(feat, (2, part.out_channels, size, size), f'map at scale {scale}')


@implements('pixelllm.FeaturePyramid', example=dict(in_channels=8, out_channels=4,
                                                    scales=(2.0, 1.0, 0.5)))
@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Each scale of the single input map (ViTDet, Li et al. 2022; PixelLLM's proposal
    stage): 2x by a transposed convolution, 1x as is, 0.5x by max pooling, then a 1x1 and a
    3x3 convolution with normalisation. mmdet ships it only among its projects, so it is
    written here.

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every output map.
        scales: output scales relative to the input, from fine to coarse (2, 1, 0.5, 0.25).
        norm_cfg: normalisation of the convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 scales: Sequence[float] = (2.0, 1.0, 0.5),
                 norm_cfg: dict = dict(type='GN', num_groups=1), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scales = tuple(scales)
        self.stages = nn.ModuleList()
        for scale in self.scales:
            if scale == 2.0:
                resample = nn.ConvTranspose2d(in_channels, in_channels, 2, stride=2)
            elif scale == 1.0:
                resample = nn.Identity()
            elif scale in (0.5, 0.25):
                kernel = int(1 / scale)
                resample = nn.MaxPool2d(kernel, stride=kernel)
            else:
                raise ValueError(f'SimpleFeaturePyramid: scale {scale} not in 2, 1, 0.5, 0.25')
            self.stages.append(nn.Sequential(
                resample,
                ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None),
                ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                           act_cfg=None)))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return tuple(stage(x) for stage in self.stages)

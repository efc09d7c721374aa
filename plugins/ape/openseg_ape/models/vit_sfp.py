"""A plain ViT with ViTDet's simple feature pyramid: the paper-scale APE's backbone."""
import math
from typing import Sequence, Tuple

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements

from ..registry import MODELS


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (detectron2's ``LayerNorm``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNorm(nn.Conv2d):
    """A convolution followed by a norm, the norm stored as its ``norm`` attribute (as
    detectron2's ``Conv2d(norm=...)``, so that the official keys map one to one)."""

    def __init__(self, *args, norm: nn.Module, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


def _eva02(arch: dict) -> nn.Module:
    import timm
    return timm.create_model(**arch)


@implements('Backbone', example=dict(
    vit=dict(model_name='eva02_tiny_patch14_224', pretrained=False, img_size=64, patch_size=16,
             class_token=False, num_classes=0, dynamic_img_size=True),
    embed_dims=192, out_channels=16), inputs=dict(strides=(4, 8, 16, 32, 64),
                                                 channels=(16,) * 5, size=64))
@MODELS.register_module()
class ViTSimpleFeaturePyramid(BaseModule):
    """A timm ViT (EVA-02 family) at stride 16 and ViTDet's simple feature pyramid on its
    last map: scales 4, 2, 1, 0.5 (transposed convolutions / max pooling, then 1x1 and 3x3
    convolutions with LayerNorm) plus a stride-64 level (max pooling of the stride-32 one),
    as APE's ``SimpleFeaturePyramid(ViT)``; maps ``p2 .. p6`` of ``out_channels``.

    The official backbone is EVA02-CLIP-L (windowed and global blocks, RoPE, SwiGLU, sub-LN,
    patch 16); timm's ``Eva`` with those sizes stands in for it (its blocks are all global:
    at 512 x 512 one 32 x 32 window is the whole map, so the computation is the same there).

    Args:
        vit: ``timm.create_model`` arguments (random weights: ``pretrained=False``; a local
            checkpoint loads through the model's ``load_from``): patch 16, no class token
            (``class_token=False``: the official ViT keeps only its position), no head
            (``num_classes=0``) and ``dynamic_img_size=True`` (any input size).
        embed_dims: the ViT's width.
        out_channels: channels of every pyramid level (APE: 256).
        scale_factors: the pyramid's scales of the stride-16 map.
    """

    def __init__(self, vit: dict, embed_dims: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.net = _eva02(vit)
        self.stage_names = []
        for scale in scale_factors:
            dim = embed_dims
            if scale == 4.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm2d(dim // 2),
                          nn.GELU(), nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)]
                dim //= 4
            elif scale == 2.0:
                layers, dim = [nn.ConvTranspose2d(dim, dim // 2, 2, 2)], dim // 2
            elif scale == 1.0:
                layers = []
            elif scale == 0.5:
                layers = [nn.MaxPool2d(2, 2)]
            else:
                raise ValueError(f'scale factor {scale} is not one of 4, 2, 1, 0.5')
            layers += [ConvNorm(dim, out_channels, 1, bias=False,
                                norm=LayerNorm2d(out_channels, eps=1e-6)),
                       ConvNorm(out_channels, out_channels, 3, padding=1, bias=False,
                                norm=LayerNorm2d(out_channels, eps=1e-6))]
            name = f'simfp_{int(math.log2(16 / scale))}'
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)

    def forward_vit(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> the last block's output as a ``(B, C, H/16, W/16)`` map (no
        final norm, as ViTDet)."""
        return self.net.forward_intermediates(x, indices=1, norm=False, output_fmt='NCHW',
                                              intermediates_only=True)[-1]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        feat = self.forward_vit(x)
        outs = [getattr(self, name)(feat) for name in self.stage_names]
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)

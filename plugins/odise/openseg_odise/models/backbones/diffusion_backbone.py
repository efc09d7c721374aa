"""ODISE's backbone: diffusion features of fixed-size windows, projected and summed per
stride into a four-level pyramid."""
import math
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.backbones.resnet import Bottleneck
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from openseg_core.models.interfaces import implements

from ...registry import MODELS

TINY_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                      'DownBlock2D'),
    up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                    'CrossAttnUpBlock2D'),
    block_out_channels=(8, 16, 16, 16), cross_attention_dim=16, attention_head_dim=2,
    norm_num_groups=8)
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    down_block_types=('DownEncoderBlock2D',) * 4, up_block_types=('UpDecoderBlock2D',) * 4,
    block_out_channels=(8, 8, 16, 16), norm_num_groups=8, sample_size=64)
TINY_TEXT = dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                 num_attention_heads=2, max_position_embeddings=77, projection_dim=16)
TINY_BACKBONE = dict(
    extractor=dict(unet=TINY_UNET, vae=TINY_VAE, text_encoder=TINY_TEXT, noise_size=(8, 8)),
    window_size=64, input_size=64, projection_dim=32, norm_groups=8)


def projection(in_channels: int, out_channels: int, groups: int) -> nn.Module:
    """One ResNet bottleneck (1x1 -> 3x3 -> 1x1, GroupNorm, a projected shortcut), the
    official ``ResNet.make_stage(BottleneckBlock, 1, ...)`` with ``norm='GN'``; mmdet's
    ``Bottleneck`` is the same block."""
    norm_cfg = dict(type='GN', num_groups=groups)
    shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                             nn.GroupNorm(groups, out_channels))
    return Bottleneck(in_channels, out_channels // Bottleneck.expansion, downsample=shortcut,
                      norm_cfg=norm_cfg)


@implements('Backbone', example=TINY_BACKBONE, inputs=dict(channels=(32, 32, 32, 32)))
@MODELS.register_module()
class DiffusionBackbone(BaseModule):
    """``(B, 3, H, W)`` in ``[0, 1]`` (``H``, ``W`` multiples of 64) -> four maps of
    ``projection_dim`` channels at strides 4, 8, 16, 32 (ODISE's ``FeatureExtractorBackbone``).

    The image is cut into square windows of side ``min(window_size, H, W)`` (stride = side,
    the last window of a row or column moved back inside); each window is resized to
    ``input_size`` (official 512, bicubic), conditioned by the implicit captioner, and sent
    through the frozen diffusion feature extractor; each map is resized back to the
    window's size at its stride (nearest), projected by its own bottleneck block and the maps
    of one stride are summed (strides clamped to ``[min_stride, max_stride]``: SD v1's
    stride-64 UNet map joins stride 32). Overlapping windows are averaged.

    Args:
        extractor: :class:`~..diffusion.StableDiffusionFeatureExtractor` config.
        captioner: :class:`~..diffusion.ImplicitCaptioner` config (``cond_shape`` and
            ``time_embed_dim`` are filled from the extractor); ``None`` conditions on the
            empty caption.
        window_size, input_size: window side and the size each window is resized to.
        projection_dim: channels of every output map (official 512).
        norm_groups: GroupNorm groups of the projections (official 32).
        min_stride, max_stride: strides outside are clamped (official 4, 32).
        window_batch: windows sent through the extractor in one pass; 1 streams them (least
            memory: one window's activations at a time, features accumulated in place).
        with_cp: recompute the projections in the backward pass instead of storing their
            activations (the official ``use_checkpoint``).
    """

    def __init__(self, extractor: dict, captioner: Optional[dict] = None,
                 window_size: int = 512, input_size: int = 512, projection_dim: int = 512,
                 norm_groups: int = 32, min_stride: int = 4, max_stride: int = 32,
                 window_batch: int = 1, with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.extractor = MODELS.build(dict(type='odise.StableDiffusionFeatureExtractor',
                                           **extractor) if 'type' not in extractor
                                      else extractor)
        self.captioner = None
        if captioner is not None:
            captioner = dict(captioner)
            captioner.setdefault('type', 'odise.ImplicitCaptioner')
            captioner.setdefault('cond_shape', tuple(self.extractor.empty_caption.shape[1:]))
            captioner.setdefault('time_embed_dim', self.extractor.time_embed_dim)
            self.captioner = MODELS.build(captioner)
        self.window_size, self.input_size = window_size, input_size
        if window_batch < 1:
            raise ValueError(f'window_batch must be >= 1, got {window_batch}')
        self.window_batch = window_batch
        self.with_cp = with_cp
        self.feature_projections = nn.ModuleList(
            projection(c, projection_dim, norm_groups) for c in self.extractor.feature_channels)
        groups: Dict[int, List[int]] = defaultdict(list)
        for index, stride in enumerate(self.extractor.feature_strides):
            groups[min(max(stride, min_stride), max_stride)].append(index)
        #: ``(stride, [indices of the extractor's maps summed into it])``, finest first.
        self.levels: List[Tuple[int, List[int]]] = sorted(groups.items())
        self.strides = tuple(stride for stride, _ in self.levels)
        self.out_channels = (projection_dim,) * len(self.levels)

    def init_weights(self) -> None:
        super().init_weights()
        for module in self.feature_projections.modules():
            if isinstance(module, nn.Conv2d):  # detectron2's c2_msra_fill
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    # ------------------------------------------------------------------ windows
    @staticmethod
    def windows(height: int, width: int, side: int) -> List[Tuple[int, int, int, int]]:
        """``(y1, x1, y2, x2)`` of the square windows covering an image."""
        def starts(length):
            count = max(length - side + side - 1, 0) // side + 1
            return [max(min(i * side + side, length) - side, 0) for i in range(count)]
        return [(y, x, y + side, x + side) for y in starts(height) for x in starts(width)]

    def project(self, maps: List[Tensor], size: Tuple[int, int]) -> List[Tensor]:
        """The extractor's maps of one window -> one map per level at the window's size."""
        out = []
        for stride, indices in self.levels:
            target = (size[0] // stride, size[1] // stride)
            level = None
            for index in indices:
                projected = self.feature_projections[index](F.interpolate(maps[index],
                                                                          size=target))
                level = projected if level is None else level + projected
            out.append(level)
        return out

    def extract(self, crops: Tensor) -> List[Tensor]:
        """``(N, 3, s, s)`` windows -> the extractor's maps after resizing to
        ``input_size``."""
        size = crops.shape[-2:]
        if tuple(size) != (self.input_size, self.input_size):
            crops = F.interpolate(crops, size=(self.input_size, self.input_size),
                                  mode='bicubic', align_corners=False, antialias=True)
        cond = time_cond = None
        if self.captioner is not None:
            cond, time_cond = self.captioner(crops, self.extractor.empty_caption)
        maps = self.extractor(crops, cond, time_cond)
        if self.with_cp and torch.is_grad_enabled():
            return checkpoint(self.project, maps, tuple(size), use_reentrant=False)
        return self.project(maps, tuple(size))

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        batch, _, height, width = images.shape
        side = min(self.window_size, height, width)
        boxes = self.windows(height, width, side)
        outs = [images.new_zeros(batch, channels, height // stride, width // stride)
                for channels, (stride, _) in zip(self.out_channels, self.levels)]
        counts = [images.new_zeros(1, 1, height // stride, width // stride)
                  for stride, _ in self.levels]
        for start in range(0, len(boxes), self.window_batch):
            group = boxes[start:start + self.window_batch]
            crops = torch.cat([images[..., y1:y2, x1:x2] for y1, x1, y2, x2 in group])
            levels = self.extract(crops)
            for w, (y1, x1, y2, x2) in enumerate(group):
                for out, count, level, (stride, _) in zip(outs, counts, levels, self.levels):
                    region = (..., slice(y1 // stride, y2 // stride),
                              slice(x1 // stride, x2 // stride))
                    out[region] += level[w * batch:(w + 1) * batch]
                    count[region] += 1
        if len(boxes) == 1:
            return tuple(outs)
        return tuple(out / count for out, count in zip(outs, counts))

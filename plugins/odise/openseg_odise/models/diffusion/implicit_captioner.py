"""ODISE's implicit captioner: a frozen CLIP image embedding turned into the UNet's text
conditioning (and a time-embedding offset) through learned, zero-gated projections."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.interfaces import implements
from openseg_core.registry import MODELS as CORE_MODELS

from ...registry import MODELS

#: open_clip's OPENAI_DATASET_MEAN / STD (the statistics every CLIP here was trained with).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PositionalLinear(nn.Module):
    """``(B, D_in)`` -> ``(B, L, D_out)``: a linear map plus a learned embedding per
    position (truncated-normal init, std 0.02, as the official one)."""

    def __init__(self, in_features: int, out_features: int, seq_len: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.positional_embedding = nn.Parameter(torch.zeros(1, seq_len, out_features))
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)[:, None] + self.positional_embedding


@implements(covered_by='odise.CategoryODISE')
@MODELS.register_module()
class ImplicitCaptioner(BaseModule):
    """``cond = empty + tanh(alpha) * (W e + P)`` and ``time = tanh(alpha_t) * (W_t e + P_t)``
    with ``e`` the frozen CLIP embedding of the image (projected, not normalised).

    ``alpha (1, L, W)`` and ``alpha_t (E,)`` are element-wise gates initialised at zero, so
    the untrained captioner conditions the UNet exactly as the empty caption does. Only the
    projections and gates train; gradients reach them through the frozen UNet's activations.

    Args:
        image_encoder: a CLIP image tower config whose ``visual`` maps CLIP-normalised images
            to embeddings (the core ``MaskCLIP`` for ViT CLIPs, ``OpenCLIPImageBackbone`` for
            convolutional ones), frozen.
        cond_shape: ``(L, W)`` of the text conditioning (SD v1: ``(77, 768)``).
        time_embed_dim: width ``E`` of the UNet's time embedding (SD v1: 1280); ``None``
            leaves the time branch out.
        clip_resize: how the image reaches the tower's input size: ``'resize_crop'``
            (CLIP's own preprocessing, as the official code: shorter side to the size,
            bicubic, centre crop) or ``'resize'`` (the whole image squeezed).
    """

    def __init__(self, image_encoder: dict, cond_shape: Sequence[int],
                 time_embed_dim: Optional[int] = None, clip_resize: str = 'resize_crop',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if clip_resize not in ('resize_crop', 'resize'):
            raise ValueError(f"clip_resize must be 'resize_crop' or 'resize', not "
                             f'{clip_resize!r}')
        self.clip_resize = clip_resize
        self.image_encoder = CORE_MODELS.build(image_encoder)
        embed_dim = self.image_encoder.embed_dim
        length, width = cond_shape
        self.clip_project = PositionalLinear(embed_dim, width, length)
        self.alpha_cond = nn.Parameter(torch.zeros(1, length, width))
        self.time_embed_project = None
        if time_embed_dim is not None:
            # One timestep, as the official model (``num_timesteps=1``).
            self.time_embed_project = PositionalLinear(embed_dim, time_embed_dim, 1)
            self.alpha_cond_time_embed = nn.Parameter(torch.zeros(time_embed_dim))
        self.register_buffer('clip_mean', torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer('clip_std', torch.tensor(CLIP_STD).view(1, 3, 1, 1), False)

    @property
    def input_size(self) -> Tuple[int, int]:
        size = self.image_encoder.visual.image_size
        return tuple(size) if isinstance(size, (tuple, list)) else (size, size)

    def clip_input(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> the tower's input, CLIP-normalised."""
        height, width = self.input_size
        if self.clip_resize == 'resize_crop':
            scale = max(height / images.shape[-2], width / images.shape[-1])
            size = (max(height, round(images.shape[-2] * scale)),
                    max(width, round(images.shape[-1] * scale)))
            images = F.interpolate(images, size=size, mode='bicubic', align_corners=False,
                                   antialias=True)
            top, left = (size[0] - height) // 2, (size[1] - width) // 2
            images = images[..., top:top + height, left:left + width]
        else:
            images = F.interpolate(images, size=(height, width), mode='bicubic',
                                   align_corners=False, antialias=True)
        return (images - self.clip_mean.to(images.dtype)) / self.clip_std.to(images.dtype)

    def image_embeds(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, D)`` CLIP image embeddings."""
        tower = self.image_encoder.visual
        dtype = next(tower.parameters()).dtype
        return tower(self.clip_input(images).to(dtype)).float()

    def forward(self, images: Tensor, empty_caption: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """``(B, 3, H, W)`` in ``[0, 1]`` and the ``(1, L, W)`` empty caption's conditioning
        -> the conditioning ``(B, L, W)`` and the time-embedding offset ``(B, E)`` (or
        ``None``)."""
        embeds = self.image_embeds(images)
        cond = empty_caption + torch.tanh(self.alpha_cond) * self.clip_project(embeds)
        time = None
        if self.time_embed_project is not None:
            time = torch.tanh(self.alpha_cond_time_embed) * self.time_embed_project(embeds)[:, 0]
        return cond, time

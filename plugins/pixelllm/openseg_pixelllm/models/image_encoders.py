"""PixelLLM's image side: one or more image encoders whose feature grids are resized to the
largest and concatenated on channels (the official EVA02 ViT-L + frozen SAM ViT-H pair)."""
import importlib
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.base import FrozenPartsMixin
from openseg_core.models.interfaces import implements
from openseg_core.utils.checkpoint import load_state_dict_file

from ..registry import MODELS


@implements('Backbone', example=dict(model_name='vit_tiny_patch16_224', img_size=64,
                                     frozen=False, model_kwargs=dict(depth=1)),
            inputs=dict(strides=(16,), channels=(192,)))
@MODELS.register_module()
class TimmViTEncoder(FrozenPartsMixin, BaseModule):
    """A ``timm`` ViT (EVA02, CLIP ViTs...) as one ``(B, C, H / p, W / p)`` map of its patch
    tokens after the final norm, prefix (class) tokens dropped: PixelLLM's "git" encoder.

    Args:
        model_name: a ``timm`` ViT architecture (``eva02_large_patch14_clip_336``...).
        img_size: the input size it is built for (the official 384).
        pretrained: a local ``timm`` / open_clip-visual state dict; its position embedding
            is resampled to ``img_size`` by the architecture's own ``checkpoint_filter_fn``.
        frozen: freeze it (PixelLLM trains its EVA02).
        model_kwargs: further ``timm.create_model`` arguments.
    """

    def __init__(self, model_name: str, img_size: int = 384, pretrained: Optional[str] = None,
                 frozen: bool = False, model_kwargs: Optional[dict] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        import timm
        self.vit = timm.create_model(model_name, pretrained=False, img_size=img_size,
                                     num_classes=0, **(model_kwargs or {}))
        self.patch_size = self.vit.patch_embed.patch_size[0]
        self.out_channels = (self.vit.num_features,)
        if pretrained is not None:
            state = load_state_dict_file(pretrained, what=f'{model_name} weights')
            state = state.get('state_dict', state)
            module = importlib.import_module(type(self.vit).__module__)
            if hasattr(module, 'checkpoint_filter_fn'):
                state = module.checkpoint_filter_fn(state, self.vit)
            result = self.vit.load_state_dict(state, strict=False)
            if result.missing_keys:
                raise ValueError(f'{pretrained}: not {model_name} weights (missing '
                                 f'{", ".join(result.missing_keys[:4])})')
        if frozen:
            self.freeze('vit', source=pretrained)

    def forward(self, images: Tensor) -> Tuple[Tensor]:
        tokens = self.vit.forward_features(images)[:, self.vit.num_prefix_tokens:]
        height, width = (s // self.patch_size for s in images.shape[-2:])
        return (tokens.transpose(1, 2).reshape(images.shape[0], -1, height, width),)


@implements('Backbone', example=dict(vision_config=dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, output_channels=8,
    global_attn_indexes=[1], window_size=2, image_size=64, patch_size=16), frozen=False),
    inputs=dict(strides=(16,), channels=(8,)))
@MODELS.register_module()
class SamViTEncoder(FrozenPartsMixin, BaseModule):
    """SAM's image encoder (``transformers``' ``SamVisionEncoder``: ViT, windowed and global
    attention, the 256-channel neck) built for ``img_size`` inputs, as PixelLLM runs SAM
    ViT-H at 384. Weights of another size (SAM's 1024) are resized when loaded as the
    official code resizes them on the fly: the absolute position embedding bicubically, the
    global attention's relative position embeddings linearly, both as ``jax.image.resize``
    (antialiased; ``transformers``' own interpolation of the latter is not, and differs by
    up to 80% of their range on random weights).

    Args:
        vision_config: ``SamVisionConfig`` arguments (default SAM ViT-H at 1024).
        img_size: the input size (default the config's).
        pretrained: a local ``SamModel`` directory; its ``vision_encoder`` is loaded.
        frozen: freeze it (PixelLLM's SAM is frozen).
    """

    VIT_H = dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                 global_attn_indexes=[7, 15, 23, 31], output_channels=256)

    def __init__(self, vision_config: Optional[dict] = None, img_size: Optional[int] = None,
                 pretrained: Optional[str] = None, frozen: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        from transformers import SamVisionConfig
        from transformers.models.sam.modeling_sam import SamVisionEncoder
        config = dict(vision_config or self.VIT_H)
        if img_size is not None:
            config['image_size'] = img_size
        config = SamVisionConfig(**config)
        self.sam = SamVisionEncoder(config)
        self.out_channels = (config.output_channels,)
        if pretrained is not None:
            from .sam import load_sam_part
            load_sam_part(self.sam, pretrained, 'vision_encoder', adapt=resize_positions)
        if frozen:
            self.freeze('sam', source=pretrained)

    def forward(self, images: Tensor) -> Tuple[Tensor]:
        return (self.sam(pixel_values=images).last_hidden_state,)


def resize_positions(key: str, weight: Tensor, shape: torch.Size) -> Tensor:
    """A SAM position embedding of another input size -> ``shape`` (``jax.image.resize``:
    bicubic for the absolute ``(1, h, w, C)``, linear for the relative ``(2 s - 1, C)``)."""
    if key.endswith('pos_embed') and weight.dim() == 4:
        return bicubic_resize(weight.permute(0, 3, 1, 2), shape[1:3]).permute(0, 2, 3, 1)
    if key.endswith(('rel_pos_h', 'rel_pos_w')) and weight.dim() == 2:
        rows = _kernel_weights(weight.shape[0], shape[0], weight.device, _triangle)
        return rows.to(weight.dtype) @ weight
    return weight


@implements(covered_by='pixelllm.PixelLLM')
@MODELS.register_module()
class ImageEncoders(BaseModule):
    """Named image encoders (backbone configs) read the same image, each with its own pixel
    normalisation; their chosen maps are resized (bicubic) to the largest grid and
    concatenated on channels.

    Args:
        encoders: ``{name: dict(backbone=cfg, out_indices=(i, ...), mean=None, std=None,
            scale_factor=1.0)}`` in concatenation order. ``mean`` / ``std`` (0-255 RGB)
            normalise the model's input for that encoder (``None``: the data preprocessor's
            normalisation is the encoder's); padded pixels are then set to 0, as the official
            preprocessing. ``scale_factor`` resizes the image (bilinear) for that encoder
            alone, as each official encoder reads the image at its own 384 px: the tiny
            configs show `shapes`' 128 px images to the small CLIP at 256 px, where its maps
            tell shapes apart better (docs/plugins/pixelllm.md, Figures).
    """

    def __init__(self, encoders: Dict[str, dict], init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.encoders = nn.ModuleDict()
        self.out_indices: Dict[str, Tuple[int, ...]] = OrderedDict()
        self.channels: Dict[str, int] = OrderedDict()
        self.scale_factors: Dict[str, float] = OrderedDict()
        for name, cfg in encoders.items():
            cfg = dict(cfg)
            self.encoders[name] = MODELS.build(cfg['backbone'])
            indices = tuple(cfg.get('out_indices', (0,)))
            self.out_indices[name] = indices
            self.channels[name] = sum(self.encoders[name].out_channels[i] for i in indices)
            self.scale_factors[name] = float(cfg.get('scale_factor', 1.0))
            if self.scale_factors[name] <= 0:
                raise ValueError(f'image encoder {name!r}: scale_factor must be positive, '
                                 f'got {self.scale_factors[name]}')
            mean, std = cfg.get('mean'), cfg.get('std')
            if (mean is None) != (std is None):
                raise ValueError(f'image encoder {name!r}: give both mean and std, or neither')
            self.register_buffer(f'{name}_mean', None if mean is None else
                                 torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer(f'{name}_std', None if std is None else
                                 torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return sum(self.channels.values())

    def forward(self, images: Tensor,
                valid_sizes: Optional[Sequence[Tuple[int, int]]] = None) -> Dict[str, Tensor]:
        """``(B, 3, H, W)`` -> ``{name: (B, C_name, h, w)}`` plus ``'all'``, the
        concatenation at the largest ``h x w``."""
        maps = OrderedDict()
        for name, encoder in self.encoders.items():
            x = images
            mean = getattr(self, f'{name}_mean')
            if mean is not None:
                x = (x - mean) / getattr(self, f'{name}_std')
                if valid_sizes is not None:
                    valid = torch.zeros_like(x[:, :1])
                    for i, (height, width) in enumerate(valid_sizes):
                        valid[i, :, :height, :width] = 1
                    x = x * valid
            if self.scale_factors[name] != 1.0:
                x = F.interpolate(x, scale_factor=self.scale_factors[name], mode='bilinear',
                                  align_corners=False)
            feats = encoder(x)
            picked = [feats[i] for i in self.out_indices[name]]
            size = max(tuple(f.shape[-2:]) for f in picked)
            maps[name] = torch.cat([bicubic_resize(f, size) for f in picked], dim=1)
        size = max(tuple(m.shape[-2:]) for m in maps.values())
        maps['all'] = torch.cat([bicubic_resize(m, size) for m in maps.values()], dim=1)
        return maps


def _keys_cubic(x: Tensor, a: float = -0.5) -> Tensor:
    x = x.abs()
    return torch.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                       torch.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a,
                                   torch.zeros_like(x)))


def _triangle(x: Tensor) -> Tensor:
    return (1 - x.abs()).clamp(min=0)


def _kernel_weights(n_in: int, n_out: int, device, kernel=_keys_cubic) -> Tensor:
    """``(n_out, n_in)`` interpolation matrix as ``jax.image.resize`` builds it: half-pixel
    centres, the kernel widened by the scale when shrinking (antialiasing), rows
    normalised."""
    scale = n_out / n_in
    width = 1 / scale if scale < 1 else 1.0
    centres = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) / scale - 0.5
    source = torch.arange(n_in, dtype=torch.float64, device=device)
    weights = kernel((source[None] - centres[:, None]) / width)
    total = weights.sum(1, keepdim=True)
    return torch.where(total.abs() > 1e-6, weights / total, torch.zeros_like(weights))


def bicubic_resize(feat: Tensor, size: Tuple[int, int]) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, C, *size)`` as ``jax.image.resize(..., 'bicubic')``, which
    the released code uses for the feature grids and SAM's position embedding.

    torch's bicubic differs: Keys' ``a = -0.75`` instead of ``-0.5``, and no antialiasing
    when shrinking; measured on random features (the parity check of
    docs/plugins/pixelllm.md), SAM's 24 x 24 grid brought to 27 x 27 differs by up to 10% of
    its range with torch's, and by 6e-6 with this.
    """
    if tuple(feat.shape[-2:]) == tuple(size):
        return feat
    rows = _kernel_weights(feat.shape[-2], size[0], feat.device).to(feat.dtype)
    cols = _kernel_weights(feat.shape[-1], size[1], feat.device).to(feat.dtype)
    return torch.einsum('oh,bchw,pw->bcop', rows, feat, cols)

"""FocalNet backbone as X-Decoder uses it, built from timm's ``timm.models.focalnet`` parts.

X-Decoder's Focal-T checkpoints use the ``focal_dw`` variant of FocalNet (official
``xdecoder/backbone/focal_dw.py``, ``D2FocalNet``), which differs from the classification
FocalNet that timm implements in two ways, both bridged here by subclassing timm's block:

* every block has two depth-wise 3x3 convolutions (``dw1`` before the modulation, ``dw2``
  before the MLP), each added residually;
* with ``use_post_norm`` the LayerNorms are applied to the *sum* ``x + gamma * f(x)`` (classic
  post-LN), whereas timm (and the classification FocalNet) normalises the branch *before* the
  residual add (``x + gamma * LN(f(x))``).

Everything else is timm's: ``FocalModulation`` (1x1 convs instead of ``nn.Linear`` on NHWC, the
same math), ``Mlp(use_conv=True)``, ``LayerScale2d``, ``LayerNorm2d``, ``Downsample`` and
``FocalNetStage``. Two more layout details (bridged as well):

* timm puts a stage's down-sampling at the *start of the next* stage (``stages[i].downsample``),
  official X-Decoder at the *end* of the stage (``layers[i-1].downsample``);
  :mod:`openseg_xdecoder.converters.official` moves the weights;
* timm's overlapping stem is ``Conv2d(k=7, s=4, p=2)``, the official one ``p=3``; the stem's
  padding is set to 3 after construction so that outputs line up with the official ones.

The official model pads the input on the right/bottom to a multiple of the patch size before
the stem and to a multiple of 2 before each down-sampling; :meth:`FocalNet.forward` does the
same, so odd sizes give the same maps as the official model.
"""
import os
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d, calculate_drop_path_rates
from timm.models.focalnet import Downsample, FocalNetBlock, FocalNetStage
from torch import Tensor, nn

from openseg_core.models.interfaces import implements
from openseg_core.models.layers import (conv2d_activation, inference_cache, onednn_linear,
                                        onednn_linear_binary)
from openseg_core.models.layers.linear import onednn_usable
from openseg_xdecoder.registry import MODELS


def _layer_norm_2d(eps: float):
    def build(dim, **kwargs):
        return LayerNorm2d(dim, eps=eps, **kwargs)
    return build


def _gelu_name(act: nn.Module) -> Optional[str]:
    """``onednn_linear``'s name for a GELU module, None for anything else."""
    if type(act) is not nn.GELU:
        return None
    return {'none': 'gelu', 'tanh': 'gelu_tanh'}.get(act.approximate)


def _gamma(layer_scale: nn.Module) -> Optional[Tensor]:
    """A timm ``LayerScale2d``'s per-channel scale, None for an Identity (no layer scale)."""
    return getattr(layer_scale, 'gamma', None)


class FocalNetDWBlock(FocalNetBlock):
    """timm's ``FocalNetBlock`` plus X-Decoder's depth-wise convs and post-LN placement.

    Args:
        dim: channels.
        use_dw_conv: add X-Decoder's ``dw1`` / ``dw2`` (``focal_dw``). When False the block is
            timm's own (the official ``focal`` variant, whose post-norm is inside the branch).
        **kwargs: timm ``FocalNetBlock`` arguments.
    """

    def __init__(self, dim: int, use_dw_conv: bool = True, **kwargs):
        super().__init__(dim, **kwargs)
        self.use_dw_conv = use_dw_conv
        if use_dw_conv:
            self.dw1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
            self.dw2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        if not self.use_dw_conv:
            return super().forward(x)
        if self._fusable(x):
            return self._fused_forward(x)
        # Exactly one of norm1 / norm1_post (norm2 / norm2_post) is an Identity (timm sets
        # them from use_post_norm); X-Decoder applies the post-norm after the residual add.
        x = x + self.dw1(x)
        x = x + self.drop_path1(self.ls1(self.modulation(self.norm1(x))))
        x = self.norm1_post(x)
        x = x + self.dw2(x)
        x = x + self.drop_path2(self.ls2(self._mlp(self.norm2(x))))
        return self.norm2_post(x)

    def _fusable(self, x: Tensor) -> bool:
        """Whether :meth:`_fused_forward` computes this block's output: inference on a
        channels-last float32 CPU map, timm's modules as built (exact or tanh GELU, no
        norm inside the modulation or the MLP)."""
        mod, mlp = self.modulation, self.mlp
        return (not self.training and not torch.is_grad_enabled() and x.dim() == 4
                and x.is_contiguous(memory_format=torch.channels_last) and onednn_usable(x)
                and _gelu_name(mlp.act) is not None and isinstance(mlp.norm, nn.Identity)
                and isinstance(mod.norm, nn.Identity) and type(mod.act) is nn.GELU
                and all(len(layer) == 2 and _gelu_name(layer[1]) == 'gelu'
                        for layer in mod.focal_layers))

    def _scaled_weights(self, name: str, conv: nn.Conv2d, output_scale: Optional[Tensor],
                        input_scale: float = 1.0) -> Tuple[Tensor, Optional[Tensor]]:
        """``conv``'s 1 x 1 weight ``(out, in)`` and bias for ``output_scale * conv(x *
        input_scale)`` (a layer scale after it, the modulator's normalisation before it),
        made once per parameter version."""
        sources = [t for t in (conv.weight, conv.bias, output_scale) if t is not None]

        def make():
            weight, bias = conv.weight.flatten(1) * input_scale, conv.bias
            if output_scale is not None:
                weight = weight * output_scale[:, None]
                bias = None if bias is None else bias * output_scale
            return weight.contiguous(), bias
        return inference_cache(self).get(name, sources, make)

    def _fused_forward(self, x: Tensor) -> Tensor:
        """The block at inference with its element-wise steps folded into the products:
        the layer scales and the modulator's ``1 / (L + 1)`` into the weights, the GELUs into
        the depth-wise convolutions and the first MLP product, the gate ``q * h(.)`` and both
        residual adds into the products that precede them (oneDNN post-ops). Focal-T on a
        512 x 512 image, 2 cores: about 8 % less backbone time; the same values to float
        rounding (about 2e-7 relative per block)."""
        batch, channels, height, width = x.shape

        def rows(image: Tensor) -> Tensor:  # (B, C, H, W) channels-last -> (B*H*W, C), a view
            return image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])

        def image(matrix: Tensor) -> Tensor:  # the inverse, a channels-last view
            return matrix.view(batch, height, width, -1).permute(0, 3, 1, 2)

        mod, mlp = self.modulation, self.mlp
        levels = mod.focal_level
        x = self.dw1(x).add_(x)
        shortcut = rows(x)
        f = onednn_linear(rows(self.norm1(x)), mod.f.weight.flatten(1), mod.f.bias)
        query, context, gates = f[:, :channels], image(f[:, channels:2 * channels]), \
            image(f[:, 2 * channels:])
        modulator = None
        for level, layer in enumerate(mod.focal_layers):
            context = conv2d_activation(layer[0], context, 'gelu')
            gate = gates[:, level:level + 1]
            modulator = (context * gate if modulator is None
                         else modulator.addcmul_(context, gate))
        global_context = mod.act(context.mean((2, 3), keepdim=True))
        modulator.addcmul_(global_context, gates[:, levels:])
        h_weight, h_bias = self._scaled_weights(
            'h', mod.h, None, 1.0 / (levels + 1) if mod.normalize_modulator else 1.0)
        modulated = onednn_linear_binary(rows(modulator), query, h_weight, h_bias, 'mul')
        proj_weight, proj_bias = self._scaled_weights('proj', mod.proj, _gamma(self.ls1))
        x = self.norm1_post(image(onednn_linear_binary(modulated, shortcut, proj_weight,
                                                       proj_bias, 'add')))
        x = self.dw2(x).add_(x)
        shortcut = rows(x)
        hidden = onednn_linear(rows(self.norm2(x)), mlp.fc1.weight.flatten(1), mlp.fc1.bias,
                               activation=_gelu_name(mlp.act))
        fc2_weight, fc2_bias = self._scaled_weights('fc2', mlp.fc2, _gamma(self.ls2))
        x = image(onednn_linear_binary(hidden, shortcut, fc2_weight, fc2_bias, 'add'))
        return self.norm2_post(x)

    def _mlp(self, x: Tensor) -> Tensor:
        """timm's ``Mlp(use_conv=True)`` of ``(B, C, H, W)`` maps; without gradients on a
        CPU, as two oneDNN inner products over the pixels with the GELU fused into the first
        (2-3x faster than the 1 x 1 convolutions and torch's GELU at every stage of Focal-T,
        the same values to float rounding)."""
        mlp = self.mlp
        gelu = _gelu_name(mlp.act)
        if (mlp.training or torch.is_grad_enabled() or gelu is None
                or not isinstance(mlp.norm, nn.Identity) or not onednn_usable(x)):
            return mlp(x)
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view for NHWC maps
        hidden = onednn_linear(rows, mlp.fc1.weight.flatten(1), mlp.fc1.bias, activation=gelu)
        out = onednn_linear(hidden, mlp.fc2.weight.flatten(1), mlp.fc2.bias)
        out = out.view(batch, height, width, -1).permute(0, 3, 1, 2)
        return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


class FocalNetDWStage(FocalNetStage):
    """timm's ``FocalNetStage`` (optional stride-2 ``Downsample`` first, then the blocks) with
    :class:`FocalNetDWBlock` blocks."""

    def __init__(self, dim: int, out_dim: int, depth: int, *, downsample: bool,
                 use_overlap_down: bool, norm_layer, drop_path: Sequence[float],
                 use_dw_conv: bool, **block_kwargs):
        super().__init__(dim=dim, out_dim=out_dim, depth=0, downsample=downsample,
                         use_overlap_down=use_overlap_down, norm_layer=norm_layer)
        self.depth = depth
        self.blocks = nn.ModuleList([
            FocalNetDWBlock(out_dim, use_dw_conv=use_dw_conv, drop_path=drop_path[i],
                            norm_layer=norm_layer, **block_kwargs)
            for i in range(depth)])


@implements('Backbone', example=dict(embed_dim=16, depths=(1, 1, 1, 1)),
            inputs=dict(strides=(4, 8, 16, 32), channels=(16, 32, 64, 128)))
@MODELS.register_module()
class FocalNet(BaseModule):
    """FocalNet (X-Decoder's ``D2FocalNet``) returning four normalised feature maps.

    The official Focal-T X-Decoder (``configs/xdecoder/svlp_focalt_lang.yaml``, backbone
    ``focal_dw``) uses: ``embed_dim=96, depths=(2, 2, 6, 2), focal_levels=(3, 3, 3, 3),
    focal_windows=(3, 3, 3, 3), mlp_ratio=4.0, patch_size=4, use_conv_embed=True,
    patch_norm=True, use_post_norm=True, use_post_norm_in_modulation=False,
    normalize_modulator=True`` (``SCALING_MODULATOR``), ``use_layerscale=True``
    (``layerscale_value=1e-4``), ``use_dw_conv=True``, ``drop_path_rate=0.3``,
    ``drop_rate=0.0``, ``out_indices=(0, 1, 2, 3)``: outputs of 96, 192, 384 and 768 channels
    at strides 4, 8, 16 and 32. These are the defaults here, except ``drop_path_rate``
    (0.3 for training, irrelevant at inference; default 0.3 as well).

    Args:
        in_channels: input image channels.
        embed_dim: channels of the first stage; stage ``i`` has ``embed_dim * 2**i``.
        depths: blocks per stage.
        focal_levels: focal levels per stage (official ``FOCAL_LEVELS``).
        focal_windows: kernel size of the first focal level per stage (``FOCAL_WINDOWS``);
            level ``k`` uses ``focal_window + 2 * k``.
        mlp_ratio: MLP hidden ratio.
        patch_size: stem stride.
        use_conv_embed: overlapping convs for the stem (7x7, stride 4, pad 3) and the
            down-samplings (3x3, stride 2, pad 1), as official ``USE_CONV_EMBED``; else
            non-overlapping ``patch_size`` / 2x2 convs.
        patch_norm: LayerNorm after the stem (official ``PATCH_NORM``; timm always has it).
        use_post_norm: post-LN blocks (``USE_POSTLN``).
        use_post_norm_in_modulation: LayerNorm inside the modulation (``USE_POSTLN_IN_MODULATION``).
        normalize_modulator: divide the context by ``focal_level + 1`` (``SCALING_MODULATOR``).
        use_layerscale: per-channel layer scale on both branches (``USE_LAYERSCALE``).
        layerscale_value: its initial value.
        use_dw_conv: X-Decoder's ``focal_dw`` blocks (True) or plain ``focal`` blocks (False).
        drop_rate: dropout in the modulation projection and the MLP.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        out_indices: stages whose (LayerNorm-ed, ``norm{i}``) output is returned.
        frozen_stages: freeze the stem (>= 0) and the first ``frozen_stages`` stages.
        with_cp: gradient checkpointing of the blocks (official ``USE_CHECKPOINT``).
        norm_eps: LayerNorm epsilon (official ``nn.LayerNorm`` default, 1e-5).
        pretrained: optional *local* checkpoint path loaded by :meth:`init_weights`: this
            module's own keys, or official ones (``layers.*`` / ``patch_embed.*``, with or
            without a ``backbone.`` prefix), converted by
            :func:`openseg_xdecoder.converters.official.convert_backbone`. Never downloaded.
    """

    def __init__(self,
                 in_channels: int = 3,
                 embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2),
                 focal_levels: Sequence[int] = (3, 3, 3, 3),
                 focal_windows: Sequence[int] = (3, 3, 3, 3),
                 mlp_ratio: float = 4.0,
                 patch_size: int = 4,
                 use_conv_embed: bool = True,
                 patch_norm: bool = True,
                 use_post_norm: bool = True,
                 use_post_norm_in_modulation: bool = False,
                 normalize_modulator: bool = True,
                 use_layerscale: bool = True,
                 layerscale_value: float = 1e-4,
                 use_dw_conv: bool = True,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 norm_eps: float = 1e-5,
                 pretrained: Optional[str] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        num_stages = len(depths)
        if not (len(focal_levels) == len(focal_windows) == num_stages):
            raise ValueError('depths, focal_levels and focal_windows need one entry per stage')
        if use_conv_embed and patch_size != 4:
            raise ValueError('the overlapping (conv) stem has stride 4: patch_size must be 4')
        if pretrained is not None and '://' in str(pretrained):
            raise ValueError(f'pretrained must be a local path, got {pretrained!r}')
        self.patch_size = patch_size
        self.num_features = [embed_dim * 2 ** i for i in range(num_stages)]
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.pretrained = pretrained
        self.use_post_norm = use_post_norm
        norm_layer = _layer_norm_2d(norm_eps)

        # timm's Downsample with stride patch_size: the stem (official patch_embed).
        self.stem = Downsample(in_channels, embed_dim, stride=patch_size,
                               overlap=use_conv_embed,
                               norm_layer=norm_layer if patch_norm else None)
        if use_conv_embed:
            self.stem.proj.padding = (3, 3)  # timm: 2; official PatchEmbed: 3
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = calculate_drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        for i in range(num_stages):
            stage = FocalNetDWStage(
                dim=self.num_features[max(i - 1, 0)], out_dim=self.num_features[i],
                depth=depths[i], downsample=i > 0, use_overlap_down=use_conv_embed,
                norm_layer=norm_layer, drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                use_dw_conv=use_dw_conv, mlp_ratio=mlp_ratio, focal_level=focal_levels[i],
                focal_window=focal_windows[i], use_post_norm=use_post_norm,
                use_post_norm_in_modulation=use_post_norm_in_modulation,
                normalize_modulator=normalize_modulator,
                layerscale_value=layerscale_value if use_layerscale else None,
                proj_drop=drop_rate)
            stage.set_grad_checkpointing(with_cp)
            self.stages.append(stage)
        for i in self.out_indices:
            self.add_module(f'norm{i}', norm_layer(self.num_features[i]))
        self._freeze_stages()

    @staticmethod
    def _pad_to(x: Tensor, multiple: int) -> Tensor:
        pad_h = (-x.shape[-2]) % multiple
        pad_w = (-x.shape[-1]) % multiple
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """``x (B, 3, H, W)`` -> the ``out_indices`` maps ``(B, embed_dim * 2**i, H / 2**(i+2),
        W / 2**(i+2))`` (sizes rounded up), each normalised by its ``norm{i}``."""
        x = self.pos_drop(self.stem(self._pad_to(x, self.patch_size)))
        outs = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self._pad_to(x, 2)
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        modules = [self.stem] + list(self.stages[:self.frozen_stages])
        modules += [getattr(self, f'norm{i}') for i in self.out_indices
                    if i < self.frozen_stages]
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def init_weights(self) -> None:
        super().init_weights()
        if self.pretrained is None:
            return
        if not os.path.isfile(self.pretrained):
            raise FileNotFoundError(f'FocalNet pretrained checkpoint not found: '
                                    f'{self.pretrained}')
        from openseg_xdecoder.converters.official import load_backbone_state
        state = load_backbone_state(self.pretrained, use_post_norm=self.use_post_norm)
        missing, unexpected = self.load_state_dict(state, strict=False)
        print_log(f'FocalNet: loaded {self.pretrained} ({len(state)} tensors); '
                  f'missing {missing}, unexpected {unexpected}', logger='current')

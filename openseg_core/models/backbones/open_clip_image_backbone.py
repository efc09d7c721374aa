"""A CLIP image tower from open_clip as a multi-scale backbone, and CLIP's classification of
regions inside it (the image side of open-vocabulary transfer)."""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.registry import MODELS
from openseg_core.utils.checkpoint import load_state_dict_file

from ..base import FrozenPartsMixin
from ..interfaces import implements

TINY_RN = dict(model_name='RN50', vision_cfg=dict(layers=[1, 1, 1, 1], width=8, image_size=64),
               embed_dim=16, frozen=False)


def load_open_clip_visual(visual: nn.Module, logit_scale: Tensor, path: str,
                          extra_keys_allowed: bool = False) -> None:
    """Load an open_clip checkpoint's image tower (``visual.*``) into ``visual`` and its
    ``logit_scale`` (when the file has one) into ``logit_scale``, in place. A file that lacks
    a weight or shapes it differently is refused in one message; keys of the file's tower
    that ``visual`` lacks are refused too unless ``extra_keys_allowed``."""
    state = load_state_dict_file(path, what='open_clip image tower weights')
    state = {k.removeprefix('module.'): v for k, v in state.get('state_dict', state).items()}
    weights = {k.removeprefix('visual.'): v for k, v in state.items() if k.startswith('visual.')}
    own = visual.state_dict()
    missing = sorted(set(own) - set(weights))
    misshaped = [f'{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}'
                 for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    if missing or misshaped:
        problem = (f'missing {missing[:5]}' if missing
                   else f'shapes differ (file vs model): {misshaped[:3]}')
        raise ValueError(f'{path}: not a checkpoint of this image tower; {problem} '
                         '(check model_name / vision_cfg)')
    visual.load_state_dict({k: weights[k] for k in own} if extra_keys_allowed else weights)
    if 'logit_scale' in state:
        logit_scale.copy_(state['logit_scale'])


@implements('Backbone', example=TINY_RN)
@MODELS.register_module()
class OpenCLIPImageBackbone(FrozenPartsMixin, BaseModule):
    """A convolutional CLIP image tower (open_clip's ``ModifiedResNet``: CLIP RN50 and
    relatives) returning its four stages, plus :meth:`embed_regions`, CLIP's own embedding of
    image regions given as masks.

    A convolutional tower keeps its features meaningful per pixel at any input size, which is
    why FC-CLIP builds on ConvNeXt-CLIP: the same frozen features feed the pixel decoder and
    classify masks.

    Args:
        model_name: an open_clip architecture with a ModifiedResNet tower (``RN50``,
            ``ShapesCLIP-RN``...).
        vision_cfg: overrides of its ``CLIPVisionCfg`` (``layers``, ``width``...), e.g. tiny
            towers for tests.
        embed_dim: CLIP embedding width ``D``; default the architecture's.
        pretrained: a local open_clip / OpenAI CLIP checkpoint (full model or image tower;
            ``visual.*`` keys); ``None`` keeps the random initialisation.
        frozen: freeze the tower (openseg's frozen-part convention; loaded from ``pretrained``,
            it is left out of checkpoints).
        out_indices: which of the four stages (strides 4, 8, 16, 32) to return.
    """

    def __init__(self, model_name: str = 'RN50', vision_cfg: Optional[dict] = None,
                 embed_dim: Optional[int] = None, pretrained: Optional[str] = None,
                 frozen: bool = True, out_indices: Sequence[int] = (0, 1, 2, 3),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        import open_clip
        from open_clip.model import _build_vision_tower
        from open_clip.modified_resnet import ModifiedResNet

        arch = open_clip.get_model_config(model_name)
        if arch is None:
            raise ValueError(f'unknown open_clip architecture {model_name!r}; choose one of '
                             'open_clip.list_models()')
        cfg = dict(arch['vision_cfg'], **(vision_cfg or {}))
        if not isinstance(cfg.get('layers'), (list, tuple)):
            raise ValueError(f'{model_name} has a ViT image tower; OpenCLIPImageBackbone needs '
                             'a convolutional one (ModifiedResNet: RN50, ShapesCLIP-RN...)')
        self.embed_dim = embed_dim or arch['embed_dim']
        self.visual = _build_vision_tower(self.embed_dim, cfg,
                                          quick_gelu=arch.get('quick_gelu', False))
        assert isinstance(self.visual, ModifiedResNet)
        # CLIP's similarity scale travels with the tower: region logits use it.
        self.register_buffer('logit_scale', torch.tensor(math.log(1 / 0.07)))
        self.out_indices = tuple(out_indices)
        width = cfg.get('width', 64)
        #: Channels of the four stages (a bottleneck expands ``4 x``).
        self.stage_channels = tuple(width * 4 * 2 ** i for i in range(4))
        self.out_channels = tuple(self.stage_channels[i] for i in self.out_indices)
        self.frozen = frozen
        if pretrained is not None:
            self._load_pretrained(pretrained)
        if frozen:
            self.freeze('', source=pretrained)

    def _load_pretrained(self, path: str) -> None:
        load_open_clip_visual(self.visual, self.logit_scale, path)

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """``(B, 3, H, W)`` normalised as the tower was trained (CLIP's mean and std) ->
        the stages of ``out_indices``, ``(B, C_i, H / 2^(i+2), W / 2^(i+2))``."""
        x = self.visual.stem(images)
        outs = []
        stages = (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4)
        for i, stage in enumerate(stages[:max(self.out_indices) + 1]):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def embed_boxes(self, images: Tensor, boxes: Tensor, scale: float = 1.3,
                    masks: Optional[Tensor] = None) -> Tensor:
        """CLIP embeddings of image crops, as CLIP sees a picture: a square around each box
        (``scale`` x its longer side), resampled to the tower's input size (mmcv's RoIAlign),
        through the whole tower. The region classifier of OVSeg and ZegFormer; on ``shapes``
        it beats pooling inside masks of a coarse stride-32 map (docs/pretrained_clip.md).

        Args:
            images: ``(B, 3, H, W)`` the normalised input.
            boxes: ``(B, Q, 4)`` ``x1, y1, x2, y2`` in input pixels.
            masks: optional ``(B, Q, H, W)`` weights in ``[0, 1]``: pixels outside a mask are
                set to the mean colour (0 after normalisation) in its crop, as OVSeg masks
                crops, so a region's box shows only the region.

        Returns:
            ``(B, Q, D)`` embeddings (not normalised).
        """
        from mmcv.ops import roi_align
        batch, queries = boxes.shape[:2]
        if masks is not None:
            # One masked copy of the image per query; RoIAlign then reads query q's copy.
            images = (images[:, None] * masks[:, :, None].to(images.dtype)).flatten(0, 1)
            batch, queries = batch * queries, 1
        boxes_shape = boxes.shape
        boxes = boxes.reshape(-1, 4).to(images.dtype)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = ((boxes[:, 2:] - boxes[:, :2]).amax(-1, keepdim=True).clamp_min(1.0) * scale / 2)
        index = torch.arange(batch, device=images.device).repeat_interleave(queries)
        rois = torch.cat([index[:, None].to(images.dtype), centre - half, centre + half], -1)
        size = self.visual.image_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        crops = roi_align(images, rois, size, 1.0, 0, 'avg', True)
        return self.visual(crops).view(*boxes_shape[:2], -1)

    def embed_regions(self, last_stage: Tensor, masks: Tensor) -> Tensor:
        """CLIP embeddings of regions: CLIP's attention pooling restricted to each mask.

        The pooling query is the mean feature inside the mask and attends to the mask's own
        positions only, the convolutional counterpart of MaskCLIP's mask-restricted class token
        (ODISE). With a mask covering the whole image it is CLIP's image embedding.

        Args:
            last_stage: ``(B, C, h, w)`` the tower's stride-32 features.
            masks: ``(B, Q, h, w)`` region weights in ``[0, 1]`` at that resolution (binary
                masks, or soft ones). Empty regions fall back to the whole image.

        Returns:
            ``(B, Q, D)`` embeddings (not normalised).
        """
        pool = self.visual.attnpool
        batch, channels, height, width = last_stage.shape
        tokens = last_stage.flatten(2).transpose(1, 2)                      # (B, hw, C)
        weights = masks.flatten(2).to(tokens.dtype)                          # (B, Q, hw)
        empty = weights.sum(-1, keepdim=True) <= 0
        weights = torch.where(empty, torch.ones_like(weights), weights)
        mean = weights @ tokens / weights.sum(-1, keepdim=True)             # (B, Q, C)
        pos = pool.positional_embedding.to(tokens.dtype)
        grid = pos[1:]
        side = int(math.sqrt(grid.shape[0]))
        if (height, width) != (side, side):
            grid = F.interpolate(grid.T.reshape(1, channels, side, side), size=(height, width),
                                 mode='bicubic', align_corners=False).reshape(channels, -1).T
        query_token = mean + pos[0]
        keys_in = tokens + grid
        heads = pool.num_heads

        def split(x):  # (B, N, C) -> (B, heads, N, C / heads)
            return x.unflatten(-1, (heads, channels // heads)).transpose(1, 2)

        q = split(pool.q_proj(query_token))
        k_self, v_self = split(pool.k_proj(query_token)), split(pool.v_proj(query_token))
        k, v = split(pool.k_proj(keys_in)), split(pool.v_proj(keys_in))
        scale = (channels // heads) ** -0.5
        logits = q @ k.transpose(-1, -2) * scale                            # (B, h, Q, hw)
        logits = logits.masked_fill(weights[:, None] <= 0, float('-inf'))
        self_logit = (q * k_self).sum(-1, keepdim=True) * scale             # (B, h, Q, 1)
        attn = torch.cat([self_logit, logits], -1).softmax(-1)
        out = attn[..., :1] * v_self + attn[..., 1:] @ v                      # (B, h, Q, C/h)
        return pool.c_proj(out.transpose(1, 2).flatten(2))

"""ODISE's diffusion features: one UNet pass on the noised latent of an image, plus VAE
encoder and decoder maps, collected at the inputs of chosen blocks."""
import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from openseg_core.models.base import FrozenPartsMixin
from openseg_core.models.interfaces import implements
from openseg_core.registry import MODELS as CORE_MODELS

from ...registry import MODELS
from . import stable_diffusion as sd

DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16, float16=torch.float16)


class _Stop(Exception):
    """Raised by a capture hook once the last needed map is in: the rest of the network is
    not run."""


class _Pruned(nn.Module):
    """Stands where a frozen module that is never run was: no weights."""

    def forward(self, *args, **kwargs):
        raise RuntimeError('this module was pruned (prune=True): it lies after the last map '
                           'the feature extractor collects')


def _in_channels(module: nn.Module) -> int:
    return module.in_channels


@implements(covered_by='odise.CategoryODISE')
@MODELS.register_module()
class StableDiffusionFeatureExtractor(FrozenPartsMixin, BaseModule):
    """Frozen Stable Diffusion parts (diffusers ``UNet2DConditionModel`` + ``AutoencoderKL``)
    turned into a multi-scale feature extractor, as ODISE's ``LdmExtractor``:

    1. ``latent = VAE posterior mean * scaling_factor`` of the image in ``[-1, 1]``;
    2. ``x_t = sqrt(abar_t) latent + sqrt(1 - abar_t) noise`` with the scheduler's alpha-bar at
       ``timestep`` (official 0) and one fixed noise tensor drawn with ``noise_seed``
       (bicubically resized when the latent is not ``noise_size``);
    3. one UNet pass on ``x_t`` with the text conditioning (the empty caption's embedding, or
       the implicit captioner's) and optionally an extra time embedding;
    4. the VAE decoder on the clean latent.

    Maps are the *inputs* of blocks: VAE encoder blocks ``encoder_block_indices`` (``k`` =
    ``down_blocks[k // layers].resnets[k % layers]``), UNet decoder blocks
    ``unet_block_indices`` (``up_blocks[k // (layers + 1)].resnets[k % (layers + 1)]``, the
    LDM ``output_blocks[k]`` inputs after the skip concatenation) and VAE decoder blocks
    ``decoder_block_indices`` (same numbering over ``up_blocks``). SD v1 with the official
    indices: encoder 5, 7 -> 512 ch at strides 4, 8; UNet 2, 5, 8, 11 -> 2560 / 1920 / 960 /
    640 ch at strides 64, 32, 16, 8; decoder 2, 5 -> 512 ch at strides 8, 4.

    Args:
        unet, vae: diffusers configs, or ``'sd-v1'`` (:data:`~.stable_diffusion.SD_V1_UNET`
            / ``SD_V1_VAE``).
        pretrained: a Stable Diffusion source, a diffusers directory (``unet/``, ``vae/``,
            ``text_encoder/``) or an original ``.ckpt`` / ``.safetensors`` (converted with
            diffusers' functions); ``None`` keeps random weights.
        text_encoder: transformers ``CLIPTextConfig`` arguments (or ``'sd-v1'``) of the
            conditioning text model read from ``pretrained``; its embedding of the empty caption
            (``empty_caption_ids``) is the unconditional conditioning.
        cond_encoder: instead of ``text_encoder``, an openseg text encoder config (e.g. the
            core ``OpenCLIPTextEncoder`` of a small CLIP) whose token features of the empty
            caption, over its whole context, condition the UNet.
        keep_text_encoder: keep the conditioning text model after computing the empty
            caption's embedding (the official code does; nothing uses it after).
        timestep: the noising step ``t``; ``< 0`` feeds the clean latent at step 0.
        noise_seed, noise_size: the fixed noise (official 42 and the 512 px latent, 64).
        scheduler: diffusers ``DDPMScheduler`` arguments (official: 1000 steps,
            ``scaled_linear`` betas from 0.00085 to 0.012, i.e. LDM's ``linear``).
        stop_early: stop the UNet and the VAE decoder after the last map they give (the
            official code runs both to the end and decodes the latent to pixels).
        prune: also free every frozen module that is never run (implies ``stop_early``).
        frozen_dtype: ``'float32'``, ``'bfloat16'`` or ``'float16'`` for the frozen weights
            and activations; maps are returned in float32.
    """

    def __init__(self, unet: dict, vae: dict, pretrained: Optional[str] = None,
                 text_encoder: Optional[dict] = None, cond_encoder: Optional[dict] = None,
                 empty_caption_ids: Sequence[int] = sd.SD_V1_EMPTY_CAPTION_IDS,
                 keep_text_encoder: bool = False, timestep: int = 0, noise_seed: int = 42,
                 noise_size: Tuple[int, int] = (64, 64), scheduler: Optional[dict] = None,
                 encoder_block_indices: Sequence[int] = (5, 7),
                 unet_block_indices: Sequence[int] = (2, 5, 8, 11),
                 decoder_block_indices: Sequence[int] = (2, 5), stop_early: bool = True,
                 prune: bool = False, frozen_dtype: str = 'float32', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        from diffusers import DDPMScheduler
        if (text_encoder is None) == (cond_encoder is None):
            raise ValueError('give exactly one of text_encoder (Stable Diffusion\'s own CLIP '
                             'text model) and cond_encoder (an openseg text encoder)')
        if frozen_dtype not in DTYPES:
            raise ValueError(f'frozen_dtype must be one of {sorted(DTYPES)}, not '
                             f'{frozen_dtype!r}')
        if pretrained is not None and sd.missing_files(pretrained):
            raise FileNotFoundError(sd.describe_missing(pretrained))
        unet, vae = sd.architecture('unet', unet), sd.architecture('vae', vae)
        self.unet = sd.build_unet(unet)
        self.vae = sd.build_vae(vae)
        states = sd.read_stable_diffusion(
            pretrained, unet, vae, parts=('unet', 'vae') + (('text_encoder',) if text_encoder
                                                            else ())) if pretrained else {}
        for part in ('unet', 'vae'):
            if part in states:
                sd.load_into(getattr(self, part), states[part], pretrained, part)
        self.text_encoder = None
        if text_encoder is not None:
            model = sd.build_text_encoder(sd.architecture('text_encoder', text_encoder))
            if 'text_encoder' in states:
                sd.load_into(model, states['text_encoder'], pretrained, 'text_encoder')
            empty = sd.empty_caption_embedding(model.eval(), tuple(empty_caption_ids))
            if keep_text_encoder:
                self.text_encoder = model
            text_source = pretrained
        else:
            encoder = CORE_MODELS.build(cond_encoder)
            empty = self._open_clip_empty_caption(encoder)
            if keep_text_encoder:
                self.text_encoder = encoder
            text_source = cond_encoder.get('pretrained')
        del states
        # The empty caption's embedding is frozen with the file it was computed from.
        self.conditioning = nn.Module()
        self.conditioning.register_buffer('empty', empty.detach().float())

        self.scheduler = DDPMScheduler(**dict(
            dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 beta_schedule='scaled_linear'), **(scheduler or {})))
        self.timestep = timestep
        latent_channels = self.vae.config.latent_channels
        # Not a buffer: rebuilt from the seed, so it never enters a checkpoint.
        self.noise = torch.randn(1, latent_channels, *noise_size, device='cpu',
                                 generator=torch.Generator().manual_seed(noise_seed))
        for name, indices in (('encoder', encoder_block_indices), ('unet', unet_block_indices),
                              ('decoder', decoder_block_indices)):
            if list(indices) != sorted(set(indices)):
                raise ValueError(f'{name}_block_indices must increase (the order maps are '
                                 f'computed in), got {tuple(indices)}')
        self.encoder_block_indices = tuple(encoder_block_indices)
        self.unet_block_indices = tuple(unet_block_indices)
        self.decoder_block_indices = tuple(decoder_block_indices)
        self.encoder_blocks = [self._block(self.vae.encoder.down_blocks, k, 0)
                               for k in self.encoder_block_indices]
        self.unet_blocks = [self._block(self.unet.up_blocks, k, 1)
                            for k in self.unet_block_indices]
        self.decoder_blocks = [self._block(self.vae.decoder.up_blocks, k, 1)
                               for k in self.decoder_block_indices]
        self.stop_early = stop_early or prune
        self.dtype = DTYPES[frozen_dtype]
        self.feature_channels = tuple(_in_channels(self._module(spec)) for spec in
                                      self.encoder_blocks + self.unet_blocks
                                      + self.decoder_blocks)
        self.feature_strides = self._strides()
        if prune:
            self.prune()
        self.set_frozen_dtype(self.dtype)
        self.freeze('unet', source=pretrained)
        self.freeze('vae', source=pretrained)
        self.freeze('conditioning', source=text_source)
        if self.text_encoder is not None:
            self.freeze('text_encoder', source=text_source)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _open_clip_empty_caption(encoder) -> Tensor:
        ids = torch.zeros(1, encoder.context_length, dtype=torch.long)
        ids[0, :2] = torch.tensor([encoder.start_token_id, encoder.end_token_id])
        with torch.no_grad():
            return encoder.encode_ids(ids)

    @staticmethod
    def _block(blocks: nn.ModuleList, index: int, extra: int) -> Tuple[nn.ModuleList, int, int]:
        per_block = len(blocks[0].resnets)
        level, position = divmod(index, per_block)
        if level >= len(blocks):
            raise ValueError(f'block index {index} is out of range: {len(blocks)} blocks of '
                             f'{per_block}')
        return blocks, level, position

    @staticmethod
    def _module(spec) -> nn.Module:
        blocks, level, position = spec
        return blocks[level].resnets[position]

    def _strides(self) -> Tuple[int, ...]:
        enc_levels = len(self.vae.encoder.down_blocks)
        latent_stride = 2 ** (enc_levels - 1)
        unet_levels = len(self.unet.up_blocks)
        dec_levels = len(self.vae.decoder.up_blocks)
        strides = [2 ** level for _, level, _ in self.encoder_blocks]
        strides += [latent_stride * 2 ** (unet_levels - 1 - level)
                    for _, level, _ in self.unet_blocks]
        strides += [2 ** (dec_levels - 1 - level) for _, level, _ in self.decoder_blocks]
        return tuple(strides)

    def set_frozen_dtype(self, dtype: torch.dtype) -> None:
        """Keep the UNet and the VAE (weights and activations) in ``dtype``."""
        self.dtype = dtype
        for part in (self.unet, self.vae):
            # nn.Module.to: diffusers' own warns on every cast, even to float32.
            nn.Module.to(part, dtype)

    def prune(self) -> None:
        """Stop the UNet and the VAE decoder after their last collected map and free every
        frozen module after it (replaced by weightless stubs)."""
        self.stop_early = True
        for net, specs in ((self.unet, self.unet_blocks), (self.vae.decoder,
                                                           self.decoder_blocks)):
            if not specs:
                continue
            blocks, level, position = max(specs, key=lambda s: (s[1], s[2]))
            block = blocks[level]
            for name in ('resnets', 'attentions'):
                layers = getattr(block, name, None)
                if layers is not None:
                    for i in range(position, len(layers)):
                        layers[i] = _Pruned()
            if getattr(block, 'upsamplers', None) is not None:
                block.upsamplers = None
            for later in range(level + 1, len(blocks)):
                blocks[later] = _Pruned()
            for name in ('conv_norm_out', 'conv_out'):
                if getattr(net, name, None) is not None:
                    setattr(net, name, _Pruned())

    # ------------------------------------------------------------------ properties
    @property
    def empty_caption(self) -> Tensor:
        """``(1, L, W)`` the text conditioning of the empty caption."""
        return self.conditioning.empty

    @property
    def time_embed_dim(self) -> int:
        """Width of the UNet's time embedding (SD v1: 1280)."""
        return self.unet.time_embedding.linear_2.out_features

    @property
    def alphas_cumprod(self) -> Tensor:
        return self.scheduler.alphas_cumprod

    # ------------------------------------------------------------------ forward
    @contextlib.contextmanager
    def _capture(self, specs, store: List[Tensor], stop: bool):
        """Record the inputs of the modules of ``specs`` in order; raise :class:`_Stop` after
        the last one when ``stop``."""
        handles, modules = [], [self._module(spec) for spec in specs]

        def hook(module, args, kwargs):
            store.append(args[0] if args else kwargs['input_tensor'])
            if stop and len(store) == len(modules):
                raise _Stop
        try:
            for module in dict.fromkeys(modules):  # a block listed twice is hooked once
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _run(self, fn, specs, stop: bool) -> List[Tensor]:
        store: List[Tensor] = []
        if not specs and stop:
            return store
        with self._capture(specs, store, stop):
            try:
                fn()
            except _Stop:
                pass
        return store

    def noised(self, latent: Tensor) -> Tuple[Tensor, Tensor]:
        """``latent (B, C, h, w)`` -> the noised latent at ``timestep`` and the timesteps
        ``(B,)``."""
        steps = torch.full((latent.shape[0],), max(self.timestep, 0), dtype=torch.long,
                           device=latent.device)
        if self.timestep < 0:
            return latent, steps
        noise = self.noise.to(latent.device, torch.float32)
        if noise.shape[-2:] != latent.shape[-2:]:
            noise = F.interpolate(noise, size=latent.shape[-2:], mode='bicubic',
                                  align_corners=False)
        # DDPMScheduler.add_noise's formula, with its alpha-bar (kept on the latent's device).
        abar = self.scheduler.alphas_cumprod.to(latent.device, torch.float32)[steps]
        abar = abar.view(-1, 1, 1, 1)
        noisy = abar.sqrt() * latent.float() + (1 - abar).sqrt() * noise
        return noisy.to(latent.dtype), steps

    def forward(self, images: Tensor, cond: Optional[Tensor] = None,
                time_cond: Optional[Tensor] = None) -> List[Tensor]:
        """Diffusion features of images.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``, ``H`` and ``W`` multiples of 64.
            cond: ``(B, L, W)`` text conditioning; default the empty caption's.
            time_cond: ``(B, E)`` added to the UNet's time embedding (the captioner's).

        Returns:
            the maps of the encoder, UNet and decoder blocks, in that order and the order of
            the indices, ``(B, C_i, H / s_i, W / s_i)`` in float32 (``feature_channels``,
            ``feature_strides``).
        """
        x = (images * 2 - 1).to(self.dtype)
        vae = self.vae
        encoder_maps: List[Tensor] = []
        with self._capture(self.encoder_blocks, encoder_maps, stop=False):
            latent = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        noisy, steps = self.noised(latent)
        if cond is None:
            cond = self.empty_caption.expand(len(images), -1, -1)
        cond = cond.to(self.dtype)

        unet_maps = self.run_unet(noisy, steps, cond, time_cond)

        def decoder_pass():
            vae.decoder(vae.post_quant_conv(latent / vae.config.scaling_factor))

        decoder_maps = self._run(decoder_pass, self.decoder_blocks, self.stop_early)
        maps = encoder_maps + unet_maps + decoder_maps
        return [m.float() for m in maps]

    def run_unet(self, noisy: Tensor, steps: Tensor, cond: Tensor,
                 time_cond: Optional[Tensor] = None) -> List[Tensor]:
        """The UNet pass: the maps of ``unet_block_indices`` (stopped after the last one when
        ``stop_early``)."""
        def unet_pass():
            self.unet(noisy, steps, encoder_hidden_states=cond)

        with self._time_embedding_offset(time_cond):
            return self._run(unet_pass, self.unet_blocks, self.stop_early)

    @contextlib.contextmanager
    def _time_embedding_offset(self, time_cond: Optional[Tensor]):
        if time_cond is None:
            yield
            return
        handle = self.unet.time_embedding.register_forward_hook(
            lambda module, args, out: out + time_cond.to(out.dtype))
        try:
            yield
        finally:
            handle.remove()

    def feature_info(self) -> Dict[str, Tuple[int, ...]]:
        """``channels`` and ``strides`` of the maps :meth:`forward` returns."""
        return dict(channels=self.feature_channels, strides=self.feature_strides)

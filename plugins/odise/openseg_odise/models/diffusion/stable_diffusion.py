"""Stable Diffusion's frozen parts from local files: a diffusers model directory, or an
original (CompVis / LDM) ``.ckpt`` / ``.safetensors`` converted in memory with diffusers' own
conversion functions. Nothing is downloaded: the architectures come from the configs given
here (diffusers' single-file loader would fetch them from the hub)."""
import os
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from openseg_core.utils.checkpoint import load_state_dict_file

#: Stable Diffusion v1.x (the ODISE checkpoints' v1.3): diffusers ``UNet2DConditionModel``,
#: ``AutoencoderKL`` and transformers ``CLIPTextConfig`` arguments. Architecture numbers only.
SD_V1_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                      'DownBlock2D'),
    up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                    'CrossAttnUpBlock2D'),
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8)
SD_V1_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    down_block_types=('DownEncoderBlock2D',) * 4, up_block_types=('UpDecoderBlock2D',) * 4,
    block_out_channels=(128, 256, 512, 512), sample_size=512, scaling_factor=0.18215)
SD_V1_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act='quick_gelu',
    projection_dim=768)
#: The tokens SD v1's CLIP tokenizer gives the empty caption: start, end, then end tokens as
#: padding up to 77 (its pad token is the end token).
SD_V1_EMPTY_CAPTION_IDS = (49406,) + (49407,) * 76

#: Architectures a config may name instead of spelling them out.
PRESETS = {'unet': {'sd-v1': SD_V1_UNET}, 'vae': {'sd-v1': SD_V1_VAE},
           'text_encoder': {'sd-v1': SD_V1_TEXT}}


def architecture(part: str, config) -> dict:
    """A part's architecture config: a dict, or a preset name (``'sd-v1'``)."""
    if isinstance(config, str):
        if config not in PRESETS[part]:
            raise ValueError(f'unknown {part} architecture {config!r}; presets: '
                             f'{sorted(PRESETS[part])}, or give the config as a dict')
        return dict(PRESETS[part][config])
    return dict(config)


#: The sub-folders of a diffusers model directory openseg reads.
DIFFUSERS_PARTS = ('unet', 'vae', 'text_encoder')


def build_unet(config: dict) -> nn.Module:
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**config)


def build_vae(config: dict) -> nn.Module:
    from diffusers import AutoencoderKL
    return AutoencoderKL(**config)


def build_text_encoder(config: dict) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(**config))


def missing_files(path: str) -> Tuple[str, ...]:
    """Files a Stable Diffusion source at ``path`` lacks: the path itself, or a diffusers
    directory's ``<part>/config.json`` and weights."""
    if os.path.isfile(path):
        return ()
    if not os.path.isdir(path):
        return (path,)
    missing = []
    for part in DIFFUSERS_PARTS:
        folder = os.path.join(path, part)
        if not os.path.isfile(os.path.join(folder, 'config.json')):
            missing.append(os.path.join(folder, 'config.json'))
        if not any(os.path.isfile(os.path.join(folder, name)) for name in (
                'diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin',
                'model.safetensors', 'pytorch_model.bin')):
            missing.append(os.path.join(folder, 'diffusion_pytorch_model.safetensors'))
    return tuple(missing)


def _load_folder_state(folder: str) -> Dict[str, Tensor]:
    for name in ('diffusion_pytorch_model.safetensors', 'model.safetensors',
                 'diffusion_pytorch_model.bin', 'pytorch_model.bin'):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return load_state_dict_file(path, what=f'Stable Diffusion {os.path.basename(folder)}')
    raise FileNotFoundError(f'no weights in {folder}')


def convert_original_checkpoint(state: Dict[str, Tensor], unet_config: dict,
                                vae_config: dict) -> Dict[str, Dict[str, Tensor]]:
    """An original Stable Diffusion state dict (``model.diffusion_model.*``,
    ``first_stage_model.*``, ``cond_stage_model.transformer.*``) -> diffusers / transformers
    state dicts ``{'unet': ..., 'vae': ..., 'text_encoder': ...}``, with diffusers' own
    conversion functions (the architecture configs given, so nothing is fetched)."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint,
                                                     convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)
    state = state.get('state_dict', state)
    if not any(k.startswith('model.diffusion_model.') for k in state):
        raise ValueError('not an original Stable Diffusion checkpoint: no '
                         '"model.diffusion_model.*" weights (a diffusers directory holds '
                         'unet/, vae/ and text_encoder/ folders instead)')
    text = convert_ldm_clip_checkpoint(state)
    text.pop('text_model.embeddings.position_ids', None)  # a buffer of older transformers
    return dict(unet=convert_ldm_unet_checkpoint(state, dict(unet_config)),
                vae=convert_ldm_vae_checkpoint(state, dict(vae_config)), text_encoder=text)


def read_stable_diffusion(path: str, unet_config: dict, vae_config: dict,
                          parts=DIFFUSERS_PARTS) -> Dict[str, Dict[str, Tensor]]:
    """State dicts of the ``parts`` of the Stable Diffusion at ``path`` (a diffusers directory
    or an original checkpoint file)."""
    if os.path.isdir(path):
        return {part: _load_folder_state(os.path.join(path, part)) for part in parts}
    state = load_state_dict_file(path, what='Stable Diffusion checkpoint')
    converted = convert_original_checkpoint(state, unet_config, vae_config)
    return {part: converted[part] for part in parts}


def load_into(module: nn.Module, state: Dict[str, Tensor], source: str, part: str) -> None:
    """Load ``state`` strictly, with one line naming the part and the first differences."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
    if missing or unexpected or misshaped:
        detail = (f'shapes differ (file vs model): {misshaped[:2]}' if misshaped else
                  f'missing {missing[:3]}, unexpected {unexpected[:3]}')
        raise ValueError(f'{source}: its {part} does not fit the configured architecture; '
                         f'{detail} (check the {part} config)')
    module.load_state_dict(state)


@torch.no_grad()
def empty_caption_embedding(text_encoder: nn.Module,
                            token_ids=SD_V1_EMPTY_CAPTION_IDS) -> Tensor:
    """``(1, L, W)``: the text conditioning of the empty caption (SD v1: the last hidden
    state of its CLIP text model on ``""`` padded to 77 tokens)."""
    ids = torch.tensor([token_ids], device=next(text_encoder.parameters()).device)
    return text_encoder(input_ids=ids).last_hidden_state


def describe_missing(path: Optional[str]) -> str:
    """One-line advice for a missing Stable Diffusion source."""
    return (f'Stable Diffusion weights not found: {", ".join(missing_files(path))}. Put the '
            'original checkpoint (e.g. sd-v1-3.ckpt) at that path, or a diffusers model '
            'directory with unet/, vae/ and text_encoder/ folders, and point '
            'model.backbone.extractor.pretrained at it')

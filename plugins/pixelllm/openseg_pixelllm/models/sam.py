"""SAM's parts from a local ``transformers`` checkpoint directory (``SamModel``, e.g.
``facebook/sam-vit-huge`` saved with ``save_pretrained``)."""
import json
import os
from typing import Callable, Optional

import torch
from torch import nn

from .language_models import WEIGHT_FILES, check_model_dir

# The prompt encoder's frequencies are stored once, as the whole model's.
_RENAMES = {'prompt_encoder': {'shared_embedding.positional_embedding':
                               'shared_image_embedding.positional_embedding'}}


def read_sam_state(path: str) -> dict:
    """Every tensor of a local ``SamModel`` directory (safetensors or PyTorch shards)."""
    check_model_dir(path, 'SAM checkpoint')
    files = [f for f in WEIGHT_FILES if os.path.isfile(os.path.join(path, f))]
    name = files[0]
    if name.endswith('.index.json'):
        with open(os.path.join(path, name)) as handle:
            shards = sorted(set(json.load(handle)['weight_map'].values()))
    else:
        shards = [name]
    state = {}
    for shard in shards:
        full = os.path.join(path, shard)
        if shard.endswith('.safetensors'):
            from safetensors.torch import load_file
            state.update(load_file(full))
        else:
            state.update(torch.load(full, map_location='cpu', weights_only=True))
    return state


def load_sam_part(module: nn.Module, path: str, part: str,
                  adapt: Optional[Callable] = None) -> None:
    """Load ``module`` from the ``<part>.*`` tensors of the SAM checkpoint in ``path``
    (``vision_encoder``, ``prompt_encoder`` or ``mask_decoder``), strictly;
    ``adapt(key, tensor, shape)`` may resize a tensor of another shape first."""
    state = read_sam_state(path)
    prefix = part + '.'
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    for mine, theirs in _RENAMES.get(part, {}).items():
        if mine not in own and theirs in state:
            own[mine] = state[theirs]
    missing = sorted(set(module.state_dict()) - set(own))
    if missing:
        raise ValueError(f'{path}: not a SAM checkpoint for this {part} (missing '
                         f'{", ".join(missing[:4])}); check the SAM size in the config')
    if adapt is not None:
        own = {k: (adapt(k, own[k], v.shape) if own[k].shape != v.shape else own[k])
               for k, v in module.state_dict().items()}
    misshaped = [k for k, v in module.state_dict().items() if own[k].shape != v.shape]
    if misshaped:
        raise ValueError(f'{path}: {part} weights of another size ({misshaped[0]}: '
                         f'{tuple(own[misshaped[0]].shape)} in the file, '
                         f'{tuple(module.state_dict()[misshaped[0]].shape)} in the model); '
                         'check the SAM size in the config')
    module.load_state_dict({k: own[k] for k in module.state_dict()})

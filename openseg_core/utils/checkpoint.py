"""Safe checkpoint loading: tensors and plain containers only, never arbitrary pickles.

A path may also be an alias of a checkpoint openseg builds itself (``openseg://shapes_clip``,
the small CLIP trained on ``shapes``): configs name it like any file, and it is built into the
openseg cache the first time it is needed."""
import importlib
import os

import torch

ALIAS_PREFIX = 'openseg://'
#: alias -> ``'module:function'`` returning the file's path (building it if needed).
ALIASES = {'openseg://shapes_clip': 'openseg_core.models.clip.pretrained:shapes_clip_path'}


def resolve_checkpoint_path(path: str) -> str:
    """``path`` itself, or the file an ``openseg://`` alias stands for (built if missing).

    Raises:
        ValueError: an unknown alias.
    """
    path = os.fspath(path)
    if not path.startswith(ALIAS_PREFIX):
        return path
    if path not in ALIASES:
        raise ValueError(f'unknown checkpoint alias {path!r}; known: {sorted(ALIASES)}')
    module, function = ALIASES[path].split(':')
    return getattr(importlib.import_module(module), function)()


def load_state_dict_file(path: str, what: str = 'checkpoint') -> dict:
    """Load ``path`` (``.pth``/``.pt``/``.bin`` or ``.safetensors``, or an ``openseg://``
    alias) with ``weights_only``.

    Raises:
        FileNotFoundError: with what to put where, if the file is missing.
    """
    path = resolve_checkpoint_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found at {path!r}: download them once and put the '
                                'file there, or change the path in the config')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)

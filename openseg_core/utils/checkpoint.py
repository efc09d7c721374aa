"""Safe checkpoint loading: tensors and plain containers only, never arbitrary pickles."""
import os

import torch


def load_state_dict_file(path: str, what: str = 'checkpoint') -> dict:
    """Load ``path`` (``.pth``/``.pt``/``.bin`` or ``.safetensors``) with ``weights_only``.

    Raises:
        FileNotFoundError: with what to put where, if the file is missing.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found at {path!r}: download them once and put the '
                                'file there, or change the path in the config')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)

"""Safe checkpoint loading: tensors and plain containers only, never arbitrary pickles.

One path for every tool and the Python API: :func:`read_checkpoint` reads a file (with errors
that say what is wrong with it), :func:`load_model_weights` puts its weights into a model and,
by default, refuses a checkpoint that does not fit the model.

A path may also be an alias of a checkpoint openseg builds itself (``openseg://shapes_clip``,
the small CLIP trained on ``shapes``): configs name it like any file, and it is built into the
openseg cache the first time it is needed.
"""
import importlib
import logging
import os
import pickle
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Union

import torch
from mmengine.logging import print_log
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not fit the model."""


#: How many mismatched keys a message names.
SHOWN = 3

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
    return read_checkpoint(path, what)


def read_checkpoint(path: str, what: str = 'checkpoint',
                    map_location: Union[str, Callable, None] = 'cpu') -> dict:
    """``torch.load(path, weights_only=True)`` with one-line errors for a bad file.

    Never suggests turning the weights-only check off: a file someone else made could run code
    on load.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{what} {path} is empty (0 bytes): the download or the save '
                              'that wrote it did not finish; get the file again')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(exc))
        if found is None:  # not torch.save's format: a raw pickle, or not a pickle at all
            raise CheckpointError(f'{what} {path} is not a readable PyTorch checkpoint (not '
                                  'written by torch.save); give a .pth written by openseg\'s '
                                  'tools, or convert an official one with '
                                  'tools/convert_checkpoint.py') from None
        raise CheckpointError(
            f'{what} {path} holds Python objects besides tensors (it pickles {found.group(1)}), '
            'and openseg only loads tensors and plain containers from a file, since anything '
            'else could run code; use a checkpoint written by openseg\'s tools, or convert an '
            'official one with tools/convert_checkpoint.py') from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        reason = str(exc).split('.')[0].strip() or type(exc).__name__
        raise CheckpointError(f'{what} {path} is not a readable PyTorch checkpoint (truncated, '
                              f'corrupt or another format: {reason}); download or save it '
                              'again') from None


def state_dict_of(checkpoint, path: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint: its ``state_dict`` (openseg, mmengine), ``model``
    (detectron2) or the file itself, without the ``module.`` prefix of wrapped models."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path} holds a {type(checkpoint).__name__}, not a dict of '
                              'weights; it is not a model checkpoint')
    state = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f'{path} holds no weights (no tensors under state_dict, model, '
                              'or at its top level); it is not a model checkpoint')
    return {re.sub(r'^module\.', '', k): v for k, v in tensors.items()}


def _examples(keys: List[str]) -> str:
    shown = ', '.join(keys[:SHOWN])
    return shown + (f' (+{len(keys) - SHOWN} more)' if len(keys) > SHOWN else '')


def _converter_for(checkpoint, model_keys: set) -> Optional[str]:
    """The name of an installed converter that turns ``checkpoint`` into this model's keys."""
    try:
        from openseg_core.plugins import get_plugin_manager
        converters = get_plugin_manager().checkpoint_converters()
    except Exception:  # noqa: B902 - a hint only; the error it decorates is the point
        return None
    for name, convert in sorted(converters.items()):
        try:
            converted = convert(checkpoint)
        except Exception:  # noqa: B902 - a converter refusing a foreign file is expected
            continue
        keys = set(converted) if isinstance(converted, dict) else set()
        if keys and len(keys & model_keys) >= 0.5 * len(model_keys):
            return name
    return None


class ModelWeights(NamedTuple):
    """What a checkpoint is compared with: the shape of every weight of a model by name
    (parameters, buffers and state-dict entries), and the names its ``state_dict`` saves
    (frozen parts loaded from their own files left out)."""

    shapes: Dict[str, torch.Size]
    saved: List[str]


def model_weights(model: nn.Module) -> ModelWeights:
    """:class:`ModelWeights` of an unwrapped model (or of one whose weights are whole)."""
    from openseg_core.models.base.frozen import SOURCE_KEY
    state = model.state_dict()
    shapes = {k: v.shape for k, v in model.named_parameters()}
    shapes.update((k, v.shape) for k, v in model.named_buffers())
    shapes.update((k, v.shape) for k, v in state.items())
    return ModelWeights(shapes, [k for k in state if not k.endswith(SOURCE_KEY)])


def load_model_weights(model: nn.Module, checkpoint: dict, path: str = 'checkpoint',
                       strict: bool = True, logger=None, remedy: Optional[str] = None,
                       weights: Optional[ModelWeights] = None) -> dict:
    """Put a checkpoint's weights into ``model``.

    Args:
        model: the unwrapped model, or an FSDP root whose state-dict type is the full one
            (then with ``weights``).
        checkpoint: what :func:`read_checkpoint` returned.
        path: the file, for messages.
        strict: refuse a checkpoint that does not fit: a weight of another shape, a weight the
            model lacks, or a model weight the checkpoint lacks. Frozen parts loaded from their
            own pretrained files are not expected in the checkpoint. ``False`` loads what
            fits and logs what did not (fine-tuning from another model on purpose).
        remedy: what the message offers instead of partial loading, where that does not apply.
        weights: the model's :class:`ModelWeights`, listed before it was sharded (FSDP):
            outside its forward a sharded model's parameters are shards, and gathering
            them whole on every process just to compare names would cost their full size.

    Returns:
        ``dict(missing=[...], unexpected=[...], shapes=[...])``: what did not fit.

    Raises:
        CheckpointError: ``strict`` and the checkpoint does not fit; the message names the first
            mismatched keys and the likely cause.
    """
    state = state_dict_of(checkpoint, path)
    current, expected = weights if weights is not None else model_weights(model)
    shapes = [f'{k} {tuple(v.shape)} in the checkpoint, {tuple(current[k])} in the model'
              for k, v in state.items() if k in current and v.shape != current[k]]
    fitting = {k: v for k, v in state.items()
               if k not in current or v.shape == current[k]}
    # Compared before loading, so that a refused checkpoint leaves the model as it was. The
    # model's state_dict leaves out frozen parts loaded from their own pretrained files (their
    # digest stands in), so a checkpoint without them is not missing anything.
    from openseg_core.models.base.frozen import SOURCE_KEY
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in current and not k.endswith(SOURCE_KEY)]
    if strict and (shapes or missing or unexpected):
        raise CheckpointError(_mismatch_message(path, checkpoint, state, current, shapes,
                                                missing, unexpected, remedy))
    result = model.load_state_dict(fitting, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(SOURCE_KEY)]
    if shapes or missing or result.unexpected_keys:
        print_log(f'partial load of {path}: {len(shapes)} weights of other shapes skipped, '
                  f'{len(missing)} model weights left as initialised, '
                  f'{len(result.unexpected_keys)} checkpoint weights unused'
                  + (f'; first skipped: {shapes[0]}' if shapes else ''),
                  logger=logger or 'current', level=logging.WARNING)
    return dict(missing=missing, unexpected=list(result.unexpected_keys), shapes=shapes)


def _mismatch_message(path, checkpoint, state, current, shapes, missing, unexpected,
                      remedy) -> str:
    parts = []
    if shapes:
        parts.append(f'{len(shapes)} weights of another shape ({_examples(shapes)})')
    if missing:
        parts.append(f'{len(missing)} model weights missing from it ({_examples(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} weights the model lacks ({_examples(unexpected)})')
    common = len(set(state) & set(current))
    converter = _converter_for(checkpoint, set(current)) if common < 0.5 * len(state) else None
    if converter:
        cause = (f'it is an official checkpoint: convert it first with `python '
                 f'tools/convert_checkpoint.py {converter} {path} converted.pth`')
    elif common < 0.5 * len(state):
        cause = (f'it was made for another model (only {common} of its {len(state)} weights '
                 'exist in this one): use the config it was trained with, or convert an '
                 'official release with tools/convert_checkpoint.py')
    elif shapes:
        cause = ('it was trained with another config of this model (another number of '
                 'queries, classes or channels): use that config')
    else:
        cause = 'it was trained with another config (parts added or removed): use that config'
    remedy = remedy or ('to load only the weights that fit, pass --partial-load (Python: '
                        'strict=False; config: load_strict=False)')
    return (f'checkpoint {path} does not fit the model: {"; ".join(parts)}. Likely cause: '
            f'{cause}; {remedy}')

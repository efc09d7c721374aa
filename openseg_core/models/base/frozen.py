"""openseg's convention for frozen parts (a CLIP tower, a diffusion UNet, a language model).

A frozen module

- stays in eval mode when the model is put in training mode (dropout off, normalisation
  statistics fixed),
- has no parameter gradients and is left out of the optimizer (see
  :class:`~openseg_core.engine.FrozenAwareOptimWrapperConstructor`),
- still passes gradients through its activations: a trainable module in front of it (ODISE's
  implicit captioner before the UNet) learns through it. Do not wrap its forward in
  ``torch.no_grad()`` for that reason; callers that need no gradient use ``no_grad``
  themselves.

A frozen module loaded from a pretrained file is **not** written into training checkpoints:
the checkpoint records the file's SHA-256 instead, and loading the checkpoint keeps the
weights read from that file — or refuses, naming the part, if the configured file differs.
Checkpoints then stay as small as the trainable weights (a Stable Diffusion UNet is 3.4 GB).
A randomly initialised frozen module is saved like any other.

Adapters trained inside a frozen module (LoRA in a language model) are named by
``freeze(..., trainable=patterns)``: those parameters keep their gradients, go into the
optimizer and into checkpoints, and the module follows the model's train / eval mode so that
dropout applies while they train; everything else in it stays frozen as above.
"""
import re
import hashlib
import os
from typing import Dict, Optional, Sequence

import torch
from torch import nn

#: Name of the checkpoint entry (``<prefix><module>.<SOURCE_KEY>``) holding a frozen
#: module's source-file digest, a ``uint8`` tensor of 32 bytes.
SOURCE_KEY = '_frozen_source_sha256'


def file_sha256(path: str) -> bytes:
    """SHA-256 of a file, or of every file under a directory (a diffusers/transformers
    model folder), names included so that renaming a shard changes it."""
    from openseg_core.utils.checkpoint import resolve_checkpoint_path
    path = resolve_checkpoint_path(path)  # an ``openseg://`` alias digests its file
    digest = hashlib.sha256()
    if os.path.isdir(path):
        files = sorted(os.path.relpath(os.path.join(root, name), path)
                       for root, _, names in os.walk(path) for name in names)
    else:
        files = ['']
    for rel in files:
        full = os.path.join(path, rel) if rel else path
        digest.update(rel.encode())
        with open(full, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 22), b''):
                digest.update(block)
    return digest.digest()


class FrozenPartsMixin:
    """Mix into an ``nn.Module`` part that holds frozen modules; call :meth:`freeze`.

    Example::

        class CLIPTextEncoder(FrozenPartsMixin, BaseModule):
            def __init__(self, pretrained=None, frozen=True):
                super().__init__()
                self.tower = build_tower()
                if pretrained:
                    load(self.tower, pretrained)
                if frozen:
                    self.freeze('tower', source=pretrained)
    """

    def freeze(self, name: str = '', source: Optional[str] = None,
               trainable: Sequence[str] = ()) -> None:
        """Freeze ``self`` (``name=''``) or its sub-module ``name``.

        Args:
            name: dotted sub-module name, ``''`` for the whole part.
            source: the pretrained file (or directory) the module's weights were loaded from;
                then checkpoints store its digest instead of the weights. ``None`` for a
                module whose weights must be saved (random or modified in place).
            trainable: regular expressions (``re.search``) of parameter names inside the
                module that stay trainable and are saved: adapters such as LoRA's
                ``lora_A`` / ``lora_B``. With any, the module is not held in eval mode.
        """
        module = self.get_submodule(name) if name else self
        module.requires_grad_(False)
        patterns = [re.compile(p) for p in trainable]
        for param_name, param in module.named_parameters():
            if any(p.search(param_name) for p in patterns):
                param.requires_grad_(True)
        if not patterns:
            nn.Module.train(module, False)
        if '_frozen_sources' not in self.__dict__:
            self._frozen_sources: Dict[str, Optional[str]] = {}
            self._frozen_trainable: Dict[str, list] = {}
            self._frozen_digests: Dict[str, bytes] = {}
            self.register_state_dict_post_hook(_drop_pretrained_frozen_weights)
            self.register_load_state_dict_pre_hook(_check_frozen_sources)
            self.register_load_state_dict_post_hook(_keep_pretrained_frozen_weights)
        self._frozen_sources[name] = source
        self._frozen_trainable[name] = patterns

    @property
    def frozen_modules(self) -> Dict[str, Optional[str]]:
        """``{sub-module name: source file or None}`` of the frozen modules of this part."""
        return dict(self.__dict__.get('_frozen_sources', {}))

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.__dict__.get('_frozen_sources', {}):
            if not self._frozen_trainable.get(name):
                nn.Module.train(self.get_submodule(name) if name else self, False)
        return self

    def _is_trainable_key(self, name: str, key: str) -> bool:
        """Whether ``key`` (relative to frozen module ``name``) is one of its adapters."""
        return any(p.search(key) for p in self._frozen_trainable.get(name, ()))

    def _frozen_digest(self, name: str) -> bytes:
        if name not in self._frozen_digests:
            self._frozen_digests[name] = file_sha256(self._frozen_sources[name])
        return self._frozen_digests[name]


def _key_prefix(prefix: str, name: str) -> str:
    return f'{prefix}{name}.' if name else prefix


def _drop_pretrained_frozen_weights(module, state_dict, prefix, local_metadata) -> None:
    for name, source in module._frozen_sources.items():
        if source is None:
            continue
        start = _key_prefix(prefix, name)
        for key in [k for k in state_dict if k.startswith(start)]:
            if not module._is_trainable_key(name, key[len(start):]):
                del state_dict[key]
        state_dict[start + SOURCE_KEY] = torch.frombuffer(
            bytearray(module._frozen_digest(name)), dtype=torch.uint8)


def _check_frozen_sources(module, state_dict, prefix, local_metadata, strict, missing_keys,
                          unexpected_keys, error_msgs) -> None:
    module.__dict__['_frozen_loaded_from_source'] = set()
    for key in [k for k in state_dict if k.startswith(prefix) and k.endswith(SOURCE_KEY)]:
        name = key[len(prefix):-len(SOURCE_KEY)].rstrip('.')
        saved = bytes(state_dict.pop(key).to(torch.uint8).tolist())
        part = f'{prefix}{name}'.rstrip('.') or type(module).__name__
        source = module._frozen_sources.get(name)
        if source is None:
            raise ValueError(
                f'the checkpoint keeps {part} frozen at the weights of a pretrained file '
                f'(sha256 {saved.hex()[:12]}...) but the model builds it without one: set its '
                '`pretrained` path in the config to that file')
        if saved != module._frozen_digest(name):
            raise ValueError(
                f'{part} was trained frozen on a different pretrained file than {source} '
                f'(checkpoint sha256 {saved.hex()[:12]}..., file '
                f'{module._frozen_digest(name).hex()[:12]}...): point the config at the '
                'file the checkpoint was trained with')
        module._frozen_loaded_from_source.add((_key_prefix(prefix, name), name))


def _keep_pretrained_frozen_weights(module, incompatible_keys) -> None:
    # The weights are the ones read from the verified file at construction: not missing
    # (adapters trained inside the module are saved, so they are).
    loaded = module.__dict__.pop('_frozen_loaded_from_source', ())
    if loaded:
        incompatible_keys.missing_keys[:] = [
            k for k in incompatible_keys.missing_keys
            if not any(k.startswith(start) and not module._is_trainable_key(name, k[len(start):])
                       for start, name in loaded)]

"""One error naming every pretrained file a model config points at that is missing."""
import os
from typing import Iterator, List, Tuple

#: Where each kind of file comes from, for the error message.
SOURCES = (
    ('extractor', 'the Stable Diffusion v1.x checkpoint (the original sd-v1-3.ckpt, or a '
                  'diffusers directory with unet/, vae/ and text_encoder/)'),
    ('', 'an open_clip state dict of the CLIP named by model_name (e.g. '
         'open_clip_pytorch_model.bin of timm/vit_large_patch14_clip_336.openai)'),
)


def pretrained_paths(cfg, where: str = 'model') -> Iterator[Tuple[str, str]]:
    """``(config key, path)`` of every ``pretrained`` entry in a (nested) config."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'pretrained' and isinstance(value, str):
                yield f'{where}.{key}', value
            else:
                yield from pretrained_paths(value, f'{where}.{key}')
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            yield from pretrained_paths(value, f'{where}.{i}')


def missing_pretrained(cfg) -> List[str]:
    """``'<path> (<config key>: <what it is>)'`` for every missing local file of ``cfg``;
    ``openseg://`` aliases are the core's business (built on demand)."""
    from .diffusion.stable_diffusion import missing_files
    missing = []
    for key, path in pretrained_paths(cfg):
        if path.startswith('openseg://'):
            continue
        what = next(text for marker, text in SOURCES if marker in key)
        absent = missing_files(path) if 'extractor' in key else (
            () if os.path.isfile(path) else (path,))
        missing.extend(f'{p} ({key}: {what})' for p in absent)
    return list(dict.fromkeys(missing))


def check_pretrained(cfg) -> None:
    """Raise ``FileNotFoundError`` naming every missing pretrained file at once."""
    missing = missing_pretrained(cfg)
    if missing:
        raise FileNotFoundError(
            f'{len(missing)} pretrained file(s) missing: ' + '; '.join(missing)
            + '. Download them once and put them there, or change the paths in the config '
            '(docs/plugins/odise.md, "Pretrained files")')

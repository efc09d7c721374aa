"""CLIP parts: the open_clip architectures openseg ships (``model_configs/*.json``, registered
with open_clip on import so ``open_clip.create_model(name)`` and every ``model_name`` option
know them)."""
import os

import open_clip

MODEL_CONFIG_DIR = os.path.join(os.path.dirname(__file__), 'model_configs')
open_clip.add_model_config(MODEL_CONFIG_DIR)

from .contrastive_clip import ContrastiveCLIP  # noqa: E402  (needs the configs registered)

__all__ = ['MODEL_CONFIG_DIR', 'ContrastiveCLIP']

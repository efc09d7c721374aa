"""ODISE's lean memory mode, applied to a built model: what the config options
(``extractor.prune``, ``extractor.frozen_dtype``, ``keep_text_encoder=False``, the shared
CLIP tower, ``test_cfg.inference_mode``) give, reached in place so that a model built once
(the paper-scale UNet is 3.4 GB in float32) can be measured both ways."""
import torch

from openseg_core.models.backbones import MaskCLIP

from .diffusion.feature_extractor import DTYPES


def default_frozen_dtype(device: str = 'cpu') -> str:
    """Half precision on a GPU, bfloat16 on a CPU (float16 matrix products are slow there)."""
    return 'float16' if str(device).startswith('cuda') else 'bfloat16'


@torch.no_grad()
def make_lean(model, frozen_dtype: str = 'bfloat16') -> None:
    """Turn an ODISE model into its lean inference form, in place:

    - the frozen Stable Diffusion and (ViT) CLIP image weights in ``frozen_dtype`` (the
      trainable heads stay float32);
    - every UNet and VAE-decoder module after the last collected map freed, and both networks
      stopped there (the official code decodes the latent to pixels);
    - the conditioning text model freed (only the empty caption's embedding is used);
    - the CLIP head sharing the implicit captioner's tower (the same CLIP: one copy);
    - ``predict`` under ``torch.inference_mode``.
    """
    extractor = model.backbone.extractor
    extractor.prune()
    extractor.text_encoder = None
    extractor.__dict__.get('_frozen_sources', {}).pop('text_encoder', None)
    dtype = DTYPES[frozen_dtype]
    extractor.set_frozen_dtype(dtype)
    captioner = getattr(model.backbone, 'captioner', None)
    if captioner is not None and getattr(model, 'region_encoder', None) is not None:
        model.region_encoder = None  # the captioner's tower serves the CLIP head
    tower = captioner.image_encoder if captioner is not None else model.region_encoder
    # Convolutional CLIP towers classify crops through mmcv's RoIAlign, which has no
    # bfloat16 kernel on CPUs: they stay in float32 (they are small).
    if isinstance(tower, MaskCLIP):
        tower.to(dtype)
    model.test_cfg['inference_mode'] = True

"""Segment images with any vocabulary from Python: ``Segmenter(cfg, ckpt)(image, ['dog'])``."""
import colorsys
from typing import List, Optional, Sequence

import mmcv
import numpy as np
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.dataset import Compose
from mmengine.runner import load_checkpoint
from PIL import Image, ImageDraw

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS


class Segmenter:
    """Loads a model once; each call segments one image with the vocabulary it is given.

    Args:
        config: config file path.
        checkpoint: checkpoint path (``None`` keeps random weights, for smoke tests).
        device: ``'cpu'``, ``'cuda'``...
    """

    def __init__(self, config: str, checkpoint: Optional[str] = None, device: str = 'cpu'):
        cfg = load_config(config)
        self.model = MODELS.build(cfg.model)
        if checkpoint is not None:
            load_checkpoint(self.model, checkpoint, map_location='cpu')
        self.model.to(device).eval()
        self.pipeline = Compose([
            dict(type='mmdet.LoadImageFromNDArray'),
            dict(type='mmdet.PackDetInputs', meta_keys=('ori_shape', 'img_shape',
                                                         'scale_factor'))])

    @torch.no_grad()
    def __call__(self, image, things: Sequence[str], stuff: Sequence[str] = ()) -> dict:
        """Segment ``image`` (path or ``(H, W, 3)`` BGR array).

        Returns:
            dict: ``panoptic`` ``(H, W)`` int array of segment ids (0 = none), ``segments``
            (list of ``id``, ``label``, ``isthing``, ``area``, ``score``), ``semantic``
            ``(H, W)`` class indices into ``things + stuff``.
        """
        things = [t.strip() for t in things if t.strip()]
        stuff = [s.strip() for s in stuff if s.strip()]
        if not things and not stuff:
            raise ValueError('the vocabulary is empty: give at least one class name')
        self.model.set_vocabulary(things, stuff)
        batch = preprocess_images(self.model, [image], self.pipeline)
        sample = self.model.predict(batch['inputs'], batch['data_samples'])[0]
        pan = sample.pred_panoptic_seg.sem_seg[0].cpu().numpy()
        names = things + stuff
        segments, ids = [], np.zeros(pan.shape, np.int32)
        for value in np.unique(pan):
            label = int(value % INSTANCE_OFFSET)
            if label >= len(names):
                continue
            region = pan == value
            ids[region] = len(segments) + 1
            segments.append(dict(id=len(segments) + 1, label=names[label],
                                 isthing=label < len(things), area=int(region.sum())))
        return dict(panoptic=ids, segments=segments,
                    semantic=sample.pred_sem_seg.sem_seg[0].cpu().numpy())


def preprocess_images(model, images: Sequence, pipeline: Optional[Compose] = None) -> dict:
    """Image paths or ``(H, W, 3)`` BGR arrays -> the model's batch: ``inputs (B, 3, H, W)``
    and ``data_samples`` with ``ori_shape``/``img_shape``."""
    pipeline = pipeline or Compose([
        dict(type='mmdet.LoadImageFromNDArray'),
        dict(type='mmdet.PackDetInputs', meta_keys=('ori_shape', 'img_shape', 'scale_factor'))])
    inputs, samples = [], []
    for image in images:
        if isinstance(image, str):
            array = mmcv.imread(image)
            if array is None:
                raise ValueError(f'cannot read image {image}: not an image file or corrupt')
            image = array
        data = pipeline(dict(img=image))
        inputs.append(data['inputs'])
        samples.append(data['data_samples'])
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples))


def _palette(n: int) -> List[tuple]:
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.75, 1.0))
            for i in range(n)]


def draw_overlay(image_rgb: np.ndarray, panoptic: np.ndarray, segments: List[dict],
                 alpha: float = 0.55) -> Image.Image:
    """Blend each segment's colour over the image and write its label at its centre."""
    out = image_rgb.astype(np.float32).copy()
    colours = _palette(len(segments))
    for seg, colour in zip(segments, colours):
        region = panoptic == seg['id']
        out[region] = (1 - alpha) * out[region] + alpha * np.asarray(colour)
    canvas = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for seg in segments:
        ys, xs = np.nonzero(panoptic == seg['id'])
        draw.text((float(xs.mean()) - 3 * len(seg['label']), float(ys.mean()) - 5),
                  seg['label'], fill=(0, 0, 0))
    return canvas

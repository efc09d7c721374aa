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


#: An image array -> the model's input and an ``OpenSegDataSample`` with its shapes.
INFERENCE_PIPELINE = [
    dict(type='mmdet.LoadImageFromNDArray'),
    dict(type='PackOpenSegInputs', meta_keys=('ori_shape', 'img_shape', 'scale_factor'))]


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
        self.pipeline = Compose(INFERENCE_PIPELINE)

    @torch.no_grad()
    def __call__(self, image, things: Sequence[str], stuff: Sequence[str] = (),
                 score_thr: float = 0.3) -> dict:
        """Segment ``image`` (path or ``(H, W, 3)`` BGR array).

        Returns:
            dict at the image's size:

            - ``panoptic``: ``(H, W)`` int array of segment ids (0 = none) and ``segments``
              (list of ``id``, ``label``, ``isthing``, ``area``);
            - ``semantic``: ``(H, W)`` class indices into ``things + stuff``;
            - ``instances``: things scored at least ``score_thr``, best first: ``label``,
              ``score``, ``mask`` (``(H, W)`` bool).
        """
        things = [t.strip() for t in things if t.strip()]
        stuff = [s.strip() for s in stuff if s.strip()]
        self.model.set_vocabulary(things, stuff)
        batch = preprocess_images(self.model, [image], self.pipeline)
        sample = self.model.predict(batch['inputs'], batch['data_samples'])[0]
        names = things + stuff
        result = {}
        if 'pred_panoptic_seg' in sample:
            pan = sample.pred_panoptic_seg.sem_seg[0].cpu().numpy()
            segments, ids = [], np.zeros(pan.shape, np.int32)
            for value in np.unique(pan):
                label = int(value % INSTANCE_OFFSET)
                if label >= len(names):
                    continue
                region = pan == value
                ids[region] = len(segments) + 1
                segments.append(dict(id=len(segments) + 1, label=names[label],
                                     isthing=label < len(things), area=int(region.sum())))
            result.update(panoptic=ids, segments=segments)
        if 'pred_sem_seg' in sample:
            result['semantic'] = sample.pred_sem_seg.sem_seg[0].cpu().numpy()
        if 'pred_instances' in sample:
            ins = sample.pred_instances
            order = ins.scores.argsort(descending=True).tolist()
            result['instances'] = [
                dict(label=names[int(ins.labels[i])], score=round(float(ins.scores[i]), 4),
                     mask=ins.masks[i].cpu().numpy().astype(bool))
                for i in order if float(ins.scores[i]) >= score_thr]
        return result


def preprocess_images(model, images: Sequence, pipeline: Optional[Compose] = None) -> dict:
    """Image paths or ``(H, W, 3)`` BGR arrays -> the model's batch: ``inputs (B, 3, H, W)``
    and ``data_samples`` with ``ori_shape``/``img_shape``."""
    pipeline = pipeline or Compose(INFERENCE_PIPELINE)
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


def drawable_segments(result: dict, task: str, names: Sequence[str]):
    """What :func:`draw_overlay` draws for ``task``: an ``(H, W)`` id map (0 = nothing) and
    its segments (``id``, ``label``, and ``area`` / ``score``).

    ``panoptic``: the panoptic segments; ``semantic``: one segment per class present;
    ``instance``: the kept instances, a better-scored one drawn over a worse one.
    """
    if task == 'panoptic':
        return result['panoptic'], result['segments']
    if task == 'semantic':
        semantic = result['semantic']
        ids, segments = np.zeros(semantic.shape, np.int32), []
        for label in np.unique(semantic):
            if label >= len(names):
                continue
            region = semantic == label
            ids[region] = len(segments) + 1
            segments.append(dict(id=len(segments) + 1, label=names[int(label)],
                                 area=int(region.sum())))
        return ids, segments
    if task == 'instance':
        instances = result['instances']
        ids = np.zeros(instances[0]['mask'].shape if instances else (1, 1), np.int32)
        segments = []
        for index in reversed(range(len(instances))):  # best last, so drawn on top
            ids[instances[index]['mask']] = index + 1
        for index, instance in enumerate(instances):
            if (ids == index + 1).any():
                segments.append(dict(id=index + 1, label=instance['label'],
                                     score=instance['score']))
        return ids, segments
    raise ValueError(f'unknown segmentation task {task!r}; choose panoptic, semantic or '
                     'instance')


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

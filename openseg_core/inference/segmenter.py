"""Segment images with any vocabulary from Python: ``Segmenter(cfg, ckpt)(image, ['dog'])``."""
import colorsys
import copy
import os
import warnings
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.dataset import Compose
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from openseg_core.engine.cli import load_config
from openseg_core.registry import MODELS
from openseg_core.utils.checkpoint import load_model_weights, read_checkpoint


#: Transforms of a config's test pipeline that inference keeps: its resizing. Loading
#: (files, annotations) and packing are inference's own.
RESIZE_SUFFIXES = ('Resize', 'ResizeShortestEdge')
#: Images above this many pixels are refused (a 64-megapixel photo decodes to 192 MB).
MAX_IMAGE_PIXELS = 64_000_000
#: Outputs are post-processed at most at this many pixels (mask logits are queries x pixels
#: floats) and enlarged to the image's size by nearest neighbour above it.
MAX_POSTPROCESS_PIXELS = 1 << 20
IMAGE_HINT = 'give a PNG, JPEG, BMP, TIFF or WebP image'


def _type_name(step: dict) -> str:
    kind = step.get('type', '')
    return (kind if isinstance(kind, str) else kind.__name__).rpartition('.')[2]


def inference_pipeline(cfg) -> list:
    """The test pipeline of ``cfg`` as inference runs it: an in-memory image, the config's
    resizing (mmdet's ``Resize`` with ``scale`` / ``keep_ratio`` and the like), packing with
    the shapes that map results back to the image."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    steps = dataset.get('pipeline') or []
    resizes = [copy.deepcopy(dict(s)) for s in steps if _type_name(s).endswith(RESIZE_SUFFIXES)]
    return ([dict(type='mmdet.LoadImageFromNDArray')] + resizes
            + [dict(type='PackOpenSegInputs', meta_keys=('ori_shape', 'img_shape',
                                                         'scale_factor'))])


def read_image(path: str, max_pixels: Optional[int] = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file as an ``(H, W, 3)`` BGR ``uint8`` array, upright.

    EXIF orientation is applied; grayscale becomes three channels; transparent pixels are
    composited over white; 16-bit images are scaled to 8 bits. The size is checked from the
    header before the image is decoded.

    Raises:
        FileNotFoundError, ValueError: one line naming the file and what to do.
    """
    return _open_image(path, max_pixels, decode=True)


def check_image(path: str, max_pixels: Optional[int] = MAX_IMAGE_PIXELS) -> None:
    """What :func:`read_image` checks before decoding (exists, is an image, size), from the
    file's header: cheap enough to check every input before a model is loaded."""
    _open_image(path, max_pixels, decode=False)


def _open_image(path, max_pixels: Optional[int], decode: bool) -> Optional[np.ndarray]:
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    if os.path.getsize(path) == 0:
        raise ValueError(f'image {path} is empty (0 bytes); {IMAGE_HINT}')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels and width * height > max_pixels:
                    raise ValueError(
                        f'image {path} is {width}x{height} ({width * height / 1e6:.1f} '
                        f'megapixels), above the limit of {max_pixels / 1e6:.1f}: downscale it, '
                        'or raise the limit (demo: --max-pixels; Segmenter(max_pixels=...))')
                if not decode:
                    return None
                array = _to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f'{path} is not an image openseg can read '
                         f'({str(exc).split(" (")[0]}); {IMAGE_HINT}') from None
    except (OSError, SyntaxError) as exc:
        # Pillow reports a truncated or corrupt file when it decodes the pixels.
        raise ValueError(f'image {path} is truncated or corrupt ({exc}); {IMAGE_HINT}') from None
    return np.ascontiguousarray(array[..., ::-1])


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
        # 16-bit (or float) grayscale: Pillow's own conversion to 8 bits clips, not scales.
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if values.max() > 255 else 255.0
        gray = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P'
                                              and 'transparency' in image.info):
        rgba = image.convert('RGBA')
        background = Image.new('RGB', rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel('A'))
        return np.asarray(background)
    return np.asarray(image.convert('RGB'))


def _enlarge(array: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes to ``shape`` (exact for any dtype)."""
    height, width = array.shape[-2:]
    if (height, width) == tuple(shape):
        return array
    rows = np.arange(shape[0]) * height // shape[0]
    cols = np.arange(shape[1]) * width // shape[1]
    return array[..., rows[:, None], cols[None, :]]


class Segmenter:
    """Loads a model once; each call segments one image with the vocabulary it is given.

    Images go through the config's test-time resizing (``test_dataloader``'s ``Resize``), and
    results come back at the image's own size.

    Args:
        config: config file path (or ``'<plugin>::<path>'``).
        checkpoint: checkpoint path (``None`` keeps random weights, for smoke tests).
        device: ``'cpu'``, ``'cuda'``...
        strict: refuse a checkpoint that does not fit the model (``False``: load what fits).
        max_pixels: refuse larger images (``None``: no limit).
    """

    def __init__(self, config: str, checkpoint: Optional[str] = None, device: str = 'cpu',
                 strict: bool = True, max_pixels: Optional[int] = MAX_IMAGE_PIXELS):
        if str(device).startswith('cuda') and not torch.cuda.is_available():
            raise ValueError(f'device {device!r} needs a CUDA GPU and torch sees none; use '
                             "device 'cpu' (demo: --device cpu)")
        cfg = load_config(config)
        self.model = MODELS.build(cfg.model)
        if checkpoint is not None:
            checkpoint = str(checkpoint)
            load_model_weights(self.model, read_checkpoint(checkpoint), checkpoint,
                               strict=strict)
        self.model.to(device).eval()
        self.pipeline = Compose(inference_pipeline(cfg))
        self.max_pixels = max_pixels

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
        for kind, names in (('things', things), ('stuff', stuff)):
            if isinstance(names, str):
                raise TypeError(f'{kind} must be a list of class names, not the string '
                                f'{names!r}; e.g. {[n.strip() for n in names.split(",")]!r}')
        things = [t.strip() for t in things if t.strip()]
        stuff = [s.strip() for s in stuff if s.strip()]
        self.model.set_vocabulary(things, stuff)
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image, self.max_pixels)
        batch = preprocess_images(self.model, [image], self.pipeline)
        sample = batch['data_samples'][0]
        full = tuple(sample.ori_shape[:2])
        # Post-process at the image's size up to MAX_POSTPROCESS_PIXELS (mmdet's rescale),
        # at a proportionally smaller size above it, then enlarge the label maps.
        shrink = min(1.0, (MAX_POSTPROCESS_PIXELS / (full[0] * full[1])) ** 0.5)
        work = tuple(max(1, round(side * shrink)) for side in full)
        sample.set_metainfo(dict(ori_shape=work))
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
                ids[pan == value] = len(segments) + 1
                segments.append(dict(id=len(segments) + 1, label=names[label],
                                     isthing=label < len(things)))
            ids = _enlarge(ids, full)
            areas = np.bincount(ids.ravel(), minlength=len(segments) + 1)
            for segment in segments:
                segment['area'] = int(areas[segment['id']])
            result.update(panoptic=ids, segments=segments)
        if 'pred_sem_seg' in sample:
            result['semantic'] = _enlarge(
                sample.pred_sem_seg.sem_seg[0].cpu().numpy().astype(np.int32), full)
        if 'pred_instances' in sample:
            ins = sample.pred_instances
            order = ins.scores.argsort(descending=True).tolist()
            result['instances'] = [
                dict(label=names[int(ins.labels[i])], score=round(float(ins.scores[i]), 4),
                     mask=_enlarge(ins.masks[i].cpu().numpy().astype(bool), full))
                for i in order if float(ins.scores[i]) >= score_thr]
        return result


def preprocess_images(model, images: Sequence, pipeline: Optional[Compose] = None,
                      max_pixels: Optional[int] = MAX_IMAGE_PIXELS) -> dict:
    """Image paths or ``(H, W, 3)`` BGR arrays -> the model's batch: ``inputs (B, 3, H, W)``
    and ``data_samples`` with ``ori_shape``/``img_shape`` (``pipeline``: see
    :func:`inference_pipeline`; without one, images go in at their own size)."""
    pipeline = pipeline or Compose(inference_pipeline({}))
    inputs, samples = [], []
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image, max_pixels)
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

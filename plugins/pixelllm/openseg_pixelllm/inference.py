"""PixelLLM's inference tasks for ``tools/demo.py`` (the ``openseg_run_task`` hook)."""
from typing import List, Optional

import numpy as np
import torch

TASKS = dict(
    traced_captioning='a caption and, for every word, the point it talks about (drawn word by '
                      'word)',
    referring_localization='the box (and mask, with a mask head) of the object a phrase '
                           'describes (--text)',
    location_captioning='a caption of the region in a box (--text "x1,y1,x2,y2" in pixels)',
    dense_captioning='boxes of the objects in the image, each with a caption')


def draw_trace(image: np.ndarray, trace: List[dict]) -> np.ndarray:
    """The trace over the image: a line through the words' points in order, each point
    numbered and labelled with its word."""
    from PIL import Image, ImageDraw
    canvas = Image.fromarray(image).convert('RGB')
    draw = ImageDraw.Draw(canvas)
    radius = max(2, min(canvas.size) // 80)
    points = [tuple(w['point']) for w in trace]
    if len(points) > 1:
        draw.line(points, fill=(255, 255, 0), width=max(1, radius // 2))
    for i, (word, (x, y)) in enumerate(zip(trace, points)):
        colour = tuple(int(c) for c in np.array([255, 40, 40]) * (1 - i / max(len(points), 1))
                       + np.array([40, 40, 255]) * (i / max(len(points), 1)))
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour,
                     outline=(0, 0, 0))
        draw.text((x + radius + 1, y - radius), f'{i + 1}:{word["word"]}', fill=(0, 0, 0))
    return np.asarray(canvas)


def draw_boxes(image: np.ndarray, boxes, labels: List[str],
               mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Boxes with their captions (and an optional mask) over the image."""
    from PIL import Image, ImageDraw
    array = image.copy()
    if mask is not None:
        array[mask] = (0.5 * array[mask] + 0.5 * np.array([255, 60, 60])).astype(np.uint8)
    canvas = Image.fromarray(array)
    draw = ImageDraw.Draw(canvas)
    for box, label in zip(boxes, labels):
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=(255, 220, 0), width=2)
        draw.text((x1 + 2, y1 + 1), label, fill=(255, 255, 255))
    return np.asarray(canvas)


def _box_from_text(text: Optional[str]) -> List[float]:
    try:
        box = [float(v) for v in (text or '').replace(' ', '').split(',')]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f'task location_captioning needs a box: --text "x1,y1,x2,y2" in '
                         f'pixels with x1 < x2 and y1 < y2, got {text!r}')
    return box


def run_task(task: str, model, inputs, data_samples, options: dict) -> Optional[dict]:
    from .models import PixelLLM
    if not isinstance(model, PixelLLM) or task not in TASKS:
        return None
    text, beam = options.get('text'), options.get('beam_size')
    if beam:
        model.test_cfg['beam_size'] = beam
    if task == 'referring_localization' and not (text and text.strip()):
        raise ValueError(f'task {task!r} needs a phrase: pass --text "..."')
    if task == 'location_captioning':
        box = torch.tensor([_box_from_text(text)])
        for sample in data_samples:
            sx, sy = sample.metainfo.get('scale_factor', (1.0, 1.0))
            from mmengine.structures import InstanceData
            sample.gt_instances = InstanceData(bboxes=box * torch.tensor([sx, sy, sx, sy]))
    internal = dict(traced_captioning='narrative', referring_localization='referring',
                    location_captioning='loc_captioning', dense_captioning='dense_captioning')
    for sample in data_samples:
        sample.task = internal[task]
        if task == 'referring_localization':
            sample.text = text
    model.predict(inputs, data_samples)
    originals = options.get('images') or [None] * len(data_samples)
    results, images = [], []
    for sample, image in zip(data_samples, originals):
        if image is None:  # no picture given: draw on white
            height, width = sample.metainfo['ori_shape'][:2]
            image = np.full((height, width, 3), 255, np.uint8)
        if task == 'traced_captioning':
            trace = [dict(word=w['word'], point=[round(float(c), 1) for c in w['point']])
                     for w in sample.pred_trace]
            results.append(dict(caption=sample.pred_caption, words=trace))
            images.append(draw_trace(image, trace))
            continue
        pred = sample.pred_instances
        boxes = [[round(float(c), 1) for c in b] for b in pred.bboxes.tolist()]
        if task == 'referring_localization':
            mask = pred.masks[0].cpu().numpy() if 'masks' in pred else None
            results.append(dict(box=boxes[0]))
            images.append(draw_boxes(image, boxes, [text], mask))
        else:
            captions = list(pred.captions)
            scores = [round(float(s), 4) for s in pred.scores]
            results.append(dict(objects=[dict(box=b, caption=c, score=s) for b, c, s
                                         in zip(boxes, captions, scores)]))
            images.append(draw_boxes(image, boxes, captions))
    return dict(results=results, images=images)

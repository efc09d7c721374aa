"""COCO-captions and Localized-Narratives files."""
import json
import os.path as osp
from collections import defaultdict
from typing import List

from mmengine.dataset import BaseDataset
from mmengine.fileio import load

from openseg_core.registry import DATASETS

from .errors import DatasetError, require_file


@DATASETS.register_module()
class CocoCaptionsDataset(BaseDataset):
    """COCO ``captions_*.json``: one sample per image with all its ``captions`` (list)."""

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'captions file')
        data = load(self.ann_file)
        captions = defaultdict(list)
        for ann in data['annotations']:
            captions[ann['image_id']].append(ann['caption'])
        return [dict(img_path=osp.join(self.data_prefix.get('img', ''), img['file_name']),
                     img_id=img['id'], height=img['height'], width=img['width'],
                     captions=captions[img['id']])
                for img in data['images'] if captions[img['id']]]


@DATASETS.register_module()
class LocalizedNarrativesDataset(BaseDataset):
    """Localized Narratives JSONL: the caption, its words with times, and the mouse trace.

    Each data info has ``caption``, ``words`` (the utterances), ``word_points`` (per word, the
    mean normalised ``(x, y)`` of the trace points inside that word's time span, or ``None``),
    ``word_boxes`` (per word, the normalised ``(x1, y1, x2, y2)`` box of its part of the trace,
    or ``None``; see ``word_boxes``) and ``trace`` (all points, ``(x, y, t)``).

    Args:
        image_name: format of the image file name from the record's ``image_id``.
        word_boxes: how a word's box is taken from the trace: ``'inside'``, the box of the
            trace points inside its time span (``None`` without any); ``'interpolated'``, the
            box of 16 points of the trace linearly interpolated (and extrapolated) over the
            span, as PixelLLM's data preparation does (every word gets one).
    """

    def __init__(self, image_name: str = '{}.png', word_boxes: str = 'inside', **kwargs):
        if word_boxes not in ('inside', 'interpolated'):
            raise ValueError(f"word_boxes must be 'inside' or 'interpolated', got {word_boxes!r}")
        self.image_name = image_name
        self.word_boxes = word_boxes
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'narratives file')
        data_list = []
        with open(self.ann_file) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f'{self.ann_file}:{line_no}: not JSON ({e.msg})') from e
                trace = [(p['x'], p['y'], p['t']) for seg in record.get('traces', []) for p in seg]
                words, points, boxes = [], [], []
                for utt in record.get('timed_caption', []):
                    inside = [(x, y) for x, y, t in trace
                              if utt['start_time'] <= t <= utt['end_time']]
                    words.append(utt['utterance'])
                    points.append(tuple(sum(c) / len(inside) for c in zip(*inside))
                                  if inside else None)
                    if self.word_boxes == 'interpolated':
                        inside = _interpolated_span(trace, utt['start_time'], utt['end_time'])
                    boxes.append((min(x for x, _ in inside), min(y for _, y in inside),
                                  max(x for x, _ in inside), max(y for _, y in inside))
                                 if inside else None)
                data_list.append(dict(
                    img_path=osp.join(self.data_prefix.get('img', ''),
                                      self.image_name.format(record['image_id'])),
                    img_id=record['image_id'], caption=record['caption'], words=words,
                    word_points=points, word_boxes=boxes, trace=trace))
        return data_list


def _interpolated_span(trace: list, start: float, end: float, samples: int = 16) -> list:
    """``samples`` points of the trace linearly interpolated over ``[start, end]``,
    extrapolated beyond its first and last points (scipy's ``interp1d``)."""
    if len(trace) < 2:
        return [(x, y) for x, y, _ in trace]
    import numpy as np
    from scipy.interpolate import interp1d
    xs, ys, ts = (np.asarray(c, dtype=np.float64) for c in zip(*sorted(trace,
                                                                       key=lambda p: p[2])))
    times = np.linspace(start, end, samples)
    fx = interp1d(ts, xs, fill_value='extrapolate')
    fy = interp1d(ts, ys, fill_value='extrapolate')
    return list(zip(fx(times).tolist(), fy(times).tolist()))

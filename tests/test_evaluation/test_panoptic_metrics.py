"""mmdet's PQ and mIoU on shapes ground truth fed back as predictions (hand-checkable)."""
import json

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoPanopticMetric, SemSegMetric
from mmdet.evaluation.functional import INSTANCE_OFFSET
from PIL import Image

from openseg_core.datasets.shapes import STUFF_CLASSES, THING_CLASSES


def _gt_as_prediction(shapes_root, drop_first_thing=False, classes=THING_CLASSES + STUFF_CLASSES):
    """Ground truth as predicted labels over ``classes`` (any order; other classes void)."""
    ann = shapes_root / 'annotations'
    pan = json.loads((ann / 'panoptic_val.json').read_text())
    names = {c['id']: c['name'] for c in pan['categories']}
    samples, dropped = [], 0
    for record, image in zip(pan['annotations'], pan['images']):
        rgb = np.asarray(Image.open(ann / 'panoptic_val' / record['file_name']), np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        out = np.full(ids.shape, len(classes), np.int64)
        sem = np.full(ids.shape, 255, np.int64)
        instance = 1
        for seg in record['segments_info']:
            if names[seg['category_id']] not in classes:
                continue
            label = classes.index(names[seg['category_id']])
            is_thing = names[seg['category_id']] in THING_CLASSES
            sem[ids == seg['id']] = label
            if drop_first_thing and is_thing and not dropped:
                dropped += 1
                continue
            out[ids == seg['id']] = label + (instance * INSTANCE_OFFSET if is_thing else 0)
            instance += is_thing
        samples.append(dict(img_id=image['id'], ori_shape=ids.shape,
                            img_path=str(shapes_root / 'images' / 'val' / image['file_name']),
                            pred_panoptic_seg=dict(sem_seg=torch.from_numpy(out)[None]),
                            pred_sem_seg=dict(sem_seg=torch.from_numpy(sem)[None]),
                            gt_sem_seg=dict(sem_seg=torch.from_numpy(sem)[None])))
    meta = dict(classes=tuple(classes),
                thing_classes=tuple(c for c in classes if c in THING_CLASSES),
                stuff_classes=tuple(c for c in classes if c in STUFF_CLASSES))
    return samples, meta, pan


def _pq(shapes_root, samples, meta):
    metric = CocoPanopticMetric(ann_file=str(shapes_root / 'annotations/panoptic_val.json'),
                                seg_prefix=str(shapes_root / 'annotations/panoptic_val'),
                                nproc=1)
    metric.dataset_meta = meta
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_perfect_prediction_scores_100(shapes_root):
    samples, meta, _ = _gt_as_prediction(shapes_root)
    result = _pq(shapes_root, samples, meta)
    assert result['PQ'] == pytest.approx(100) and result['PQ_st'] == pytest.approx(100)
    semseg = SemSegMetric()
    semseg.dataset_meta = meta
    semseg.process({}, samples)
    assert semseg.compute_metrics(semseg.results)['mIoU'] == pytest.approx(100)


def test_one_missed_thing_costs_what_pq_says(shapes_root):
    samples, meta, pan = _gt_as_prediction(shapes_root, drop_first_thing=True)
    result = _pq(shapes_root, samples, meta)
    # The missed segment's class: its TP count n drops by one and one FN appears, so its
    # RQ = (n-1) / (n-1 + 0.5); every other class keeps PQ = 100 (SQ stays 1).
    first = next(s for r in pan['annotations'] for s in r['segments_info']
                 if s['category_id'] <= len(THING_CLASSES))
    n = sum(s['category_id'] == first['category_id'] for r in pan['annotations']
            for s in r['segments_info'])
    present = {s['category_id'] for r in pan['annotations'] for s in r['segments_info']}
    present_things = [c for c in present if c <= len(THING_CLASSES)]
    expected_th = 100 * (len(present_things) - 1 + (n - 1) / (n - 0.5)) / len(present_things)
    assert result['PQ_th'] == pytest.approx(expected_th, abs=0.01)
    assert result['PQ_st'] == pytest.approx(100)

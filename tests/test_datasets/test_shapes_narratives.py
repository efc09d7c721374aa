"""The shapes narratives point every object word at its own object."""
import json

import pycocotools.mask as mask_utils

from openseg_core.datasets.shapes import THING_CLASSES, ShapesSpec, generate_shapes


def test_each_object_phrase_points_at_its_own_object(tmp_path):
    root = generate_shapes(str(tmp_path / 'shapes'),
                           ShapesSpec(image_size=64, splits=dict(train=40)))
    with open(f'{root}/annotations/instances_train.json') as f:
        coco = json.load(f)
    by_image = {}
    for ann in coco['annotations']:  # written in the caption's order of objects
        by_image.setdefault(ann['image_id'], []).append(mask_utils.decode(ann['segmentation']))
    repeated = 0
    with open(f'{root}/annotations/narratives_train.jsonl') as f:
        for record in map(json.loads, f):
            words = [u['utterance'] for u in record['timed_caption']]
            points = record['traces'][0]
            masks = by_image[int(record['image_id'])]
            names = [i for i, w in enumerate(words) if w in THING_CLASSES]
            assert len(names) == len(masks)
            repeated += len({words[i] for i in names}) < len(names)
            for k, i in enumerate(names):
                for j in (i - 2, i - 1, i):  # size, colour and name of object k
                    x, y = int(points[j]['x'] * 64), int(points[j]['y'] * 64)
                    assert masks[k][min(y, 63), min(x, 63)], (record['caption'], words[j])
    assert repeated  # the case that once pointed a second square at the first

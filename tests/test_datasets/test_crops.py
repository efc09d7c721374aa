import json

import numpy as np
from PIL import Image

from openseg_core.datasets import CropToBox, ObjectCropsDataset, square_crop_box


def _dataset(root, split, **kwargs):
    return ObjectCropsDataset(data_root=str(root), ann_file=f'annotations/instances_{split}.json',
                              data_prefix=dict(img=f'images/{split}/',
                                               seg=f'annotations/panoptic_{split}/'),
                              test_mode=True, **kwargs)


def test_square_crop_box_keeps_the_box_and_stays_inside():
    assert square_crop_box([10, 20, 10, 4], 2.0, 100, 100) == [5, 12, 25, 32]
    assert square_crop_box([0, 0, 10, 10], 1.5, 100, 100) == [0, 0, 15, 15]  # moved in
    assert square_crop_box([90, 0, 30, 30], 10, 64, 48) == [16, 0, 64, 48]  # capped at 48


def test_thing_crops_and_stuff_patches(shapes_root):
    inst = json.loads((shapes_root / 'annotations' / 'instances_val_open.json').read_text())
    things = _dataset(shapes_root, 'val_open')
    assert len(things) == len(inst['annotations'])
    assert things.metainfo['thing_classes'] == tuple(c['name'] for c in inst['categories'])
    for info, ann in zip(things, inst['annotations']):
        x0, y0, x1, y1 = info['crop_box']
        x, y, w, h = ann['bbox']
        assert x1 - x0 == y1 - y0 and x0 <= x and y0 <= y and x + w <= x1 and y + h <= y1
        name = things.metainfo['thing_classes'][info['gt_label']]
        assert info['group'] == ('held_out' if name in ('diamond', 'star') else 'seen')
    assert {info['group'] for info in things} == {'seen', 'held_out'}

    both = _dataset(shapes_root, 'val', stuff_ann_file='annotations/panoptic_val.json')
    assert both.metainfo['stuff_classes'] == ('sky', 'grass', 'sand', 'water')
    patches = [info for info in both if info['group'] == 'stuff']
    assert patches and all(info['gt_label'] >= 6 for info in patches)
    sem_dir = shapes_root / 'annotations' / 'semantic_val'
    for info in patches:
        sem = np.asarray(Image.open(sem_dir / info['img_path'].rsplit('/', 1)[1]))
        x0, y0, x1, y1 = info['crop_box']
        # semantic ids are category ids: things 1-6, stuff 7-10 in label order
        assert (sem[y0:y1, x0:x1] == info['gt_label'] + 1).mean() >= 0.8


def test_crop_to_box():
    image = np.arange(5 * 6 * 3).reshape(5, 6, 3)
    out = CropToBox()(dict(img=image, crop_box=[1, 2, 4, 5]))
    assert out['img_shape'] == (3, 3) and (out['img'] == image[2:5, 1:4]).all()

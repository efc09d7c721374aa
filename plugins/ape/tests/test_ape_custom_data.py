"""The custom-data recipe (``ape::ape_custom_data.py``, config only) trains and evaluates on a
user's COCO-format detection set plus a RefCOCO-format grounding set, here files written in
those formats."""
import json

import numpy as np
from PIL import Image

from openseg_core.testing import run_tool_in_process

SIZE = 64


def _write_dataset(root):
    """Two splits of 3 images: a red square ('cat') and a blue rectangle ('dog') each, COCO
    instances (polygons) + RefCOCO refs (JSON) for the training split."""
    rng = np.random.default_rng(0)
    categories = [dict(id=7, name='cat'), dict(id=3, name='dog'), dict(id=9, name='bird')]
    for split in ('train', 'val'):
        (root / 'images' / split).mkdir(parents=True)
        images, annotations, refs = [], [], []
        for i in range(3):
            pixels = np.full((SIZE, SIZE, 3), 200, np.uint8)
            x, y = rng.integers(2, 20, size=2)
            boxes = {7: [int(x), int(y), 20, 20], 3: [int(x) + 30, int(y) + 10, 24, 14]}
            pixels[y:y + 20, x:x + 20] = (220, 30, 30)
            pixels[y + 10:y + 24, x + 30:x + 54] = (30, 30, 220)
            name = f'{i:03d}.jpg'
            Image.fromarray(pixels).save(root / 'images' / split / name)
            images.append(dict(id=i + 1, file_name=name, width=SIZE, height=SIZE))
            for cat, (bx, by, bw, bh) in boxes.items():
                ann_id = len(annotations) + 1
                annotations.append(dict(
                    id=ann_id, image_id=i + 1, category_id=cat, iscrowd=0, area=bw * bh,
                    bbox=[bx, by, bw, bh],
                    segmentation=[[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]]))
                sentence = 'the red square' if cat == 7 else 'the blue box on the right'
                refs.append(dict(ref_id=ann_id, ann_id=ann_id, image_id=i + 1, split=split,
                                 category_id=cat, sentences=[dict(sent=sentence, raw=sentence,
                                                                  tokens=sentence.split())]))
        (root / 'annotations').mkdir(exist_ok=True)
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(dict(
            images=images, annotations=annotations, categories=categories)))
        (root / 'annotations' / f'refs_{split}.json').write_text(json.dumps(refs))


def test_recipe_trains_and_evaluates_on_coco_and_refcoco_files(tmp_path):
    root = tmp_path / 'my_data'
    _write_dataset(root)
    data = f'{root}/'
    options = [f'train_dataloader.dataset.datasets.{i}.data_root={data}' for i in range(2)]
    options += [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                                 'test_dataloader')
                for key in ('num_workers=0', 'persistent_workers=False')]
    options += [f'val_dataloader.dataset.data_root={data}',
                f'test_dataloader.dataset.data_root={data}',
                f'val_evaluator.0.ann_file={data}annotations/instances_val.json',
                f'test_evaluator.0.ann_file={data}annotations/instances_val.json',
                'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                'default_hooks.logger.interval=1']
    result = run_tool_in_process(['train.py', 'ape::ape_custom_data.py', '--work-dir',
                                  tmp_path / 'work', '--cfg-options', *options])
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'loss_cls' in log and 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()

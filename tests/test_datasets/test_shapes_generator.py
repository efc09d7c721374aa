import hashlib
import json
import shutil

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from openseg_core.datasets.shapes import (HELD_OUT_CLASSES, ShapesSpec, generate_shapes,
                                          shapes_categories)


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    spec = ShapesSpec(image_size=48, splits=dict(train=3, val=2))
    a = generate_shapes(str(tmp_path / 'a'), spec)
    b = generate_shapes(str(tmp_path / 'b'), spec)
    c = generate_shapes(str(tmp_path / 'c'), ShapesSpec(image_size=48, seed=1,
                                                        splits=dict(train=3, val=2)))
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')
    assert a.endswith('a')
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.shapes-')]


def test_panoptic_png_semantic_png_and_instances_agree(shapes_root):
    ann = shapes_root / 'annotations'
    pan = json.loads((ann / 'panoptic_val.json').read_text())
    inst = json.loads((ann / 'instances_val.json').read_text())
    cats = {c['id']: c for c in pan['categories']}
    by_image = {}
    for a in inst['annotations']:
        by_image.setdefault(a['image_id'], []).append(a)
    for record in pan['annotations']:
        rgb = np.asarray(Image.open(ann / 'panoptic_val' / record['file_name']), np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        sem = np.asarray(Image.open(ann / 'semantic_val' / record['file_name']))
        things = by_image.get(record['image_id'], [])
        assert sum(cats[s['category_id']]['isthing'] for s in record['segments_info']) == \
            len(things)
        for seg in record['segments_info']:
            region = ids == seg['id']
            assert region.sum() == seg['area'] > 0
            assert (sem[region] == seg['category_id']).all()  # ADE-style: id, 0 = unlabelled
        for thing in things:
            decoded = mask_utils.decode(thing['segmentation']).astype(bool)
            assert decoded.sum() == thing['area']
            seg = [s for s in record['segments_info'] if s['area'] == thing['area']
                   and s['category_id'] == thing['category_id']]
            assert seg and (ids[decoded] == seg[0]['id']).all()


def test_held_out_classes_only_in_the_open_split(shapes_root):
    held = {c['id'] for c in shapes_categories() if c['name'] in HELD_OUT_CLASSES}
    used = {}
    for split in ('train', 'val', 'val_open'):
        data = json.loads((shapes_root / 'annotations' / f'instances_{split}.json').read_text())
        used[split] = {a['category_id'] for a in data['annotations']}
    assert not (used['train'] | used['val']) & held
    assert used['val_open'] & held


def test_text_annotations_mention_attributes(shapes_root):
    ann = shapes_root / 'annotations'
    refs = json.loads((ann / 'refs_train.json').read_text())
    inst = {a['id']: a for a in json.loads((ann / 'instances_train.json').read_text())[
        'annotations']}
    names = {c['id']: c['name'] for c in shapes_categories()}
    for ref in refs:
        assert names[inst[ref['ann_id']]['category_id']] in ref['sentences'][0]['sent']
    caps = json.loads((ann / 'captions_train.json').read_text())['annotations']
    assert len(caps) == 2 * 16 and all(' a ' in ' ' + c['caption'] for c in caps)
    narr = [json.loads(line) for line in (ann / 'narratives_train.jsonl').open()]
    for record in narr:
        words = record['caption'].replace(',', '').split()
        assert [u['utterance'] for u in record['timed_caption']] == words
        assert len(record['traces'][0]) == len(words)
        assert all(0 <= p['x'] <= 1 and 0 <= p['y'] <= 1 for p in record['traces'][0])


def test_caption_split_names_every_class_and_writes_nothing_else(tmp_path):
    spec = ShapesSpec(image_size=64, splits=dict(pretrain=60))
    generate_shapes(str(tmp_path / 'a'), spec)
    generate_shapes(str(tmp_path / 'b'), spec)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')
    root = tmp_path / 'a'
    files = sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())
    assert [f for f in files if not f.startswith('images/pretrain/')] == [
        'annotations/captions_pretrain.json', 'shapes.json']
    data = json.loads((root / 'annotations' / 'captions_pretrain.json').read_text())
    assert len(data['images']) == 60 == len(files) - 2
    per_image = {}
    for ann in data['annotations']:
        per_image.setdefault(ann['image_id'], []).append(ann['caption'])
    assert sorted(per_image) == list(range(1, 61)) and min(map(len, per_image.values())) >= 4
    words = set(' '.join(a['caption'] for a in data['annotations']).replace('.', ' ')
                .replace(',', ' ').split())
    # Held-out classes included: captions name everything, only segmentation labels hold out.
    assert {c['name'] for c in shapes_categories()} <= words
    assert {'red', 'small', 'large', 'left', 'above'} <= words
    captions = [a['caption'] for a in data['annotations']]
    assert 'a photo of a star.' in captions and 'a photo of a diamond.' in captions


def test_caption_split_leaves_the_segmentation_splits_unchanged(tmp_path):
    seg = dict(train=3, val=2, val_open=2)
    generate_shapes(str(tmp_path / 'a'), ShapesSpec(image_size=48, splits=seg))
    generate_shapes(str(tmp_path / 'b'), ShapesSpec(image_size=48, splits=dict(seg, pretrain=5)))
    for root in (tmp_path / 'a', tmp_path / 'b'):
        (root / 'shapes.json').unlink()  # lists the splits
        shutil.rmtree(root / 'images' / 'pretrain', ignore_errors=True)
        (root / 'annotations' / 'captions_pretrain.json').unlink(missing_ok=True)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')

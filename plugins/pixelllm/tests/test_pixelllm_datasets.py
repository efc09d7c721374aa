"""PixelLLM's data: narratives joined with instance masks, objects with their sentences, the
packing of word boxes."""
import math

import torch

from openseg_core.engine.cli import load_config
from openseg_core.registry import DATASETS


def _dataset(name, key, root):
    cfg = load_config('pixelllm::pixelllm_tiny_shapes_trace.py')
    data = dict(cfg[key] if key in cfg else getattr(cfg, key))
    data['data_root'] = f'{root}/'
    return DATASETS.build(data)


def test_narratives_carry_words_boxes_and_the_objects_masks(shapes_root):
    ds = _dataset('trace', 'narratives_val', shapes_root)
    assert ds.metainfo['classes'][:2] == ('circle', 'square')
    item = ds[0]
    sample = item['data_samples']
    words = sample.gt_words
    assert sample.text.replace(',', '').split() == words
    assert sample.gt_word_boxes.shape == (len(words), 4)
    assert sample.captions == [sample.text]
    # one trace point per shapes word: a degenerate box at the word's point
    boxes = sample.gt_word_boxes
    assert torch.equal(boxes[:, :2], boxes[:, 2:])
    masks = sample.metainfo['gt_masks'].masks
    labels = sample.metainfo['gt_bboxes_labels']
    names = [ds.metainfo['classes'][i] for i in labels]
    # a word naming an object points inside it
    for word, box in zip(words, boxes):
        if word in names:
            x, y = (int(math.floor(v * 64)) for v in box[:2])
            assert any(masks[k][y, x] for k, n in enumerate(names) if n == word)


def test_object_captions_per_object_and_per_image(shapes_root):
    from openseg_pixelllm.datasets import ObjectCaptionsDataset
    common = dict(data_root=f'{shapes_root}/', refs_file='annotations/refs_val.json',
                  split='val', ann_file='annotations/instances_val.json',
                  data_prefix=dict(img='images/val/'))
    objects = ObjectCaptionsDataset(per='object', **common)
    images = ObjectCaptionsDataset(per='image', **common)
    per_image = [images.get_data_info(i) for i in range(len(images))]
    assert len(images) == 6 and len(objects) == sum(len(i['instances']) for i in per_image)
    first = objects.get_data_info(0)
    assert len(first['instances']) == 1 and first['text'] == first['captions'][0]
    assert len(first['captions']) == 2  # the shortest description and its variant
    assert all(len(c) == 2 for i in per_image for c in i['gt_captions'])

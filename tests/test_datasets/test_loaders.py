import json
import shutil

import numpy as np
import pytest

from openseg_core.datasets import (CocoCaptionsDataset, DatasetError,
                                   LocalizedNarrativesDataset, OpenVocabPanopticDataset,
                                   ReferringDataset)
from openseg_core.datasets.shapes import HELD_OUT_CLASSES, STUFF_CLASSES, THING_CLASSES


def _panoptic(root, split='val', **kwargs):
    return OpenVocabPanopticDataset(
        data_root=str(root), ann_file=f'annotations/panoptic_{split}.json',
        data_prefix=dict(img=f'images/{split}/', seg=f'annotations/panoptic_{split}/'),
        test_mode=True, pipeline=[dict(type='LoadImageFromFile'),
                                  dict(type='LoadPanopticAnnotations')], **kwargs)


def test_panoptic_vocabulary_comes_from_the_file(shapes_root):
    ds = _panoptic(shapes_root)
    assert ds.metainfo['thing_classes'] == THING_CLASSES
    assert ds.metainfo['stuff_classes'] == STUFF_CLASSES
    sample = ds[0]
    labels = set(sample['gt_seg_map'].ravel().tolist()) - {255}
    assert labels and max(labels) < len(THING_CLASSES) + len(STUFF_CLASSES)


def test_excluded_classes_become_void(shapes_root):
    ds = _panoptic(shapes_root, split='val_open', exclude_classes=HELD_OUT_CLASSES)
    assert not set(HELD_OUT_CLASSES) & set(ds.metainfo['classes'])
    assert len(ds.metainfo['classes']) == len(THING_CLASSES) + len(STUFF_CLASSES) - 2


def test_unknown_category_is_a_clear_error(shapes_root, tmp_path):
    root = tmp_path / 'shapes'
    shutil.copytree(shapes_root, root)
    path = root / 'annotations' / 'panoptic_val.json'
    data = json.loads(path.read_text())
    data['annotations'][0]['segments_info'][0]['category_id'] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match='names category 99'):
        _panoptic(root)


def test_missing_annotation_file_says_how_to_fix(tmp_path):
    with pytest.raises(DatasetError, match='openseg shapes'):
        _panoptic(tmp_path)


def test_referring_captions_narratives(shapes_root):
    refs = ReferringDataset(data_root=str(shapes_root), refs_file='annotations/refs_val.json',
                            ann_file='annotations/instances_val.json', split='val',
                            data_prefix=dict(img='images/val/'),
                            pipeline=[dict(type='LoadImageFromFile'),
                                      dict(type='LoadAnnotations', with_bbox=True,
                                           with_mask=True)])
    sample = refs[0]
    assert sample['gt_masks'].masks.shape[0] == 1 and sample['gt_masks'].masks.sum() > 0
    assert isinstance(sample['text'], str) and sample['text']

    caps = CocoCaptionsDataset(data_root=str(shapes_root),
                               ann_file='annotations/captions_val.json',
                               data_prefix=dict(img='images/val/'))
    assert len(caps) == 6 and len(caps[0]['captions']) == 2

    narr = LocalizedNarrativesDataset(data_root=str(shapes_root),
                                      ann_file='annotations/narratives_val.jsonl',
                                      data_prefix=dict(img='images/val/'))
    info = narr[0]
    assert len(info['words']) == len(info['word_points'])
    assert all(p is not None for p in info['word_points'])


def test_metainfo_classes_choose_a_subset_in_the_given_order(shapes_root):
    ds = _panoptic(shapes_root, metainfo=dict(classes=['sky', 'square', 'circle']))
    # Things first (labels index things + stuff), the given order within each group.
    assert ds.metainfo['thing_classes'] == ('square', 'circle')
    assert ds.metainfo['stuff_classes'] == ('sky',)
    assert ds.metainfo['classes'] == ('square', 'circle', 'sky')
    full = _panoptic(shapes_root)
    for index in range(len(ds)):
        mine = ds[index]['gt_seg_map']
        theirs = full[index]['gt_seg_map']
        for label, name in enumerate(ds.metainfo['classes']):
            # Each kept class has its pixels under its new label; the rest is void.
            assert ((mine == label) == (theirs == full.metainfo['classes'].index(name))).all()
        kept = [full.metainfo['classes'].index(n) for n in ds.metainfo['classes']]
        assert ((mine == 255) == ~np.isin(theirs, kept)).all()


def test_metainfo_thing_and_stuff_classes(shapes_root):
    ds = _panoptic(shapes_root, metainfo=dict(thing_classes=['triangle'],
                                              stuff_classes=['water', 'grass']))
    assert ds.metainfo['classes'] == ('triangle', 'water', 'grass')
    things_only = _panoptic(shapes_root, metainfo=dict(thing_classes=['circle']))
    assert things_only.metainfo['stuff_classes'] == ()


@pytest.mark.parametrize('metainfo, message', [
    (dict(classes=['circle', 'hexagon']), r"classes \['hexagon'\] are not among"),
    (dict(thing_classes=['grass']), r'puts grass \(stuff\) in the other group'),
    (dict(classes=['sky', 'sky']), r"repeats classes \['sky'\]"),
    (dict(classes=['sky'], thing_classes=['circle']), 'are not thing_classes \\+ stuff_classes'),
    (dict(classes='sky'), 'not the string'),
])
def test_bad_metainfo_is_a_clear_error(shapes_root, metainfo, message):
    with pytest.raises(DatasetError, match=message):
        _panoptic(shapes_root, metainfo=metainfo)


def test_annotation_file_that_is_not_json_is_named(tmp_path):
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'panoptic_val.json').write_text('{"images": [')
    with pytest.raises(DatasetError, match='panoptic_val.json is not valid JSON'):
        _panoptic(tmp_path)

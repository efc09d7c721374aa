"""Thing-stuff equalization (stuff regions split by external contours) and image-centric
grounding samples."""
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from openseg_ape.datasets import SampleGroundingPhrases, StuffToInstances, split_stuff_region


def _disk(size, center, radius):
    ys, xs = np.mgrid[:size, :size]
    return (ys - center[0]) ** 2 + (xs - center[1]) ** 2 <= radius ** 2


def test_a_ring_stays_one_region_with_its_hole_filled():
    ring = _disk(64, (32, 32), 20) & ~_disk(64, (32, 32), 8)
    regions = split_stuff_region(ring)
    assert len(regions) == 1
    filled = _disk(64, (32, 32), 20)
    # The hole belongs to the region; only the rasterised boundary may differ by a pixel.
    assert regions[0][32, 32]
    assert np.abs(regions[0].astype(int) - filled.astype(int)).sum() <= 0.05 * filled.sum()


def test_disconnected_parts_become_regions_and_small_ones_are_dropped():
    region = np.zeros((64, 64), bool)
    region[2:14, 2:14] = True     # 144 px: kept
    region[40:46, 40:50] = True   # 60 px: dropped (APE keeps regions of more than 64 px)
    region[20:30, 50:60] = True   # 100 px: kept
    regions = split_stuff_region(region)
    # As APE's polygons run through the boundary pixels' centres, a region loses half a
    # pixel all around: 12 x 12 -> 11 x 11, 10 x 10 -> 9 x 9.
    assert sorted(int(r.sum()) for r in regions) == [81, 121]
    assert regions[0].any() and not any(r[40:46, 40:50].any() for r in regions)
    assert split_stuff_region(np.zeros((8, 8), bool)) == []


def test_stuff_becomes_instances_beside_the_things():
    seg = np.full((64, 64), 5, np.uint8)   # one stuff class (label 5) everywhere...
    seg[:, 40:] = 6                        # ...and another on the right
    thing = np.zeros((64, 64), np.uint8)
    thing[10:20, 10:20] = 1
    seg[thing.astype(bool)] = 0            # the thing's pixels carry its class (0)
    results = dict(gt_seg_map=seg, gt_masks=BitmapMasks(thing[None], 64, 64),
                   gt_bboxes=HorizontalBoxes(torch.tensor([[10., 10., 20., 20.]])),
                   gt_bboxes_labels=np.array([0]), gt_ignore_flags=np.array([False]))
    out = StuffToInstances()(results)
    assert out['gt_bboxes_labels'].tolist() == [0, 5, 6]
    masks = out['gt_masks'].to_ndarray().astype(bool)
    assert masks.shape == (3, 64, 64) and not out['gt_ignore_flags'].any()
    # Label 5 surrounds the thing: its region has the thing's hole filled.
    assert masks[1][15, 15] and masks[1][1:-1, 1:39].all() and not masks[1][:, 40:].any()
    assert not masks[2][:, :40].any() and masks[2][1:-1, 41:63].all()
    torch.testing.assert_close(out['gt_bboxes'].tensor[2], torch.tensor([40., 0., 64., 64.]),
                               atol=1.0, rtol=0)


def test_one_phrase_per_object_by_nms_on_random_scores():
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [30., 30., 40., 40.]])
    results = dict(phrases=['red square', 'the square on the left', 'blue circle'],
                   gt_bboxes=HorizontalBoxes(boxes), gt_bboxes_labels=np.array([0, 1, 2]),
                   gt_ignore_flags=np.zeros(3, bool),
                   gt_masks=BitmapMasks(np.zeros((3, 40, 40), np.uint8), 40, 40))
    torch.manual_seed(0)
    out = SampleGroundingPhrases(nms_thr=0.6, max_phrases=128)(dict(results))
    assert len(out['phrases']) == 2 and 'blue circle' in out['phrases']
    assert len(out['gt_masks']) == 2 and out['gt_bboxes_labels'].tolist() == [0, 1]
    index = out['phrases'].index('blue circle')
    assert out['gt_bboxes'].tensor[index].tolist() == [30., 30., 40., 40.]
    out = SampleGroundingPhrases(nms_thr=0.6, max_phrases=1)(dict(results))
    assert len(out['phrases']) == 1


@pytest.mark.parametrize('seed', range(3))
def test_both_phrases_of_an_object_are_drawn(seed):
    torch.manual_seed(seed)
    seen = set()
    for _ in range(20):
        out = SampleGroundingPhrases()(dict(
            phrases=['a', 'b'], gt_bboxes=HorizontalBoxes(torch.tensor([[0., 0., 5., 5.]] * 2)),
            gt_bboxes_labels=np.array([0, 1]), gt_ignore_flags=np.zeros(2, bool)))
        seen.update(out['phrases'])
    assert seen == {'a', 'b'}

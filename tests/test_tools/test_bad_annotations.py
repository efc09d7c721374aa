"""Bad annotation files: the error names the file and what is wrong with it."""
import json
import shutil

import pytest

from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool_in_process,
                                  snapshot, tiny_run_options)


@pytest.fixture
def data(shapes_root, tmp_path):
    root = tmp_path / 'shapes'
    shutil.copytree(shapes_root, root)
    return root


def _test(root, checkpoint, work, *extra):
    return run_tool_in_process(['test.py', TINY_CONFIG, checkpoint, '--work-dir', work,
                                '--cfg-options', *tiny_run_options(root), *extra])


def test_annotation_file_that_is_not_json(data, tmp_path, tiny_checkpoint):
    path = data / 'annotations' / 'panoptic_val.json'
    path.write_text('{"images": [oops')
    work = tmp_path / 'work'
    result = _test(data, tiny_checkpoint, work)
    assert_one_line_error(result, 'test.py', str(path), 'is not valid JSON')
    assert snapshot(work) is None


def test_instances_file_given_as_panoptic(data, tmp_path, tiny_checkpoint):
    work = tmp_path / 'work'
    instances = data / 'annotations' / 'instances_val.json'
    result = _test(data, tiny_checkpoint, work,
                   f'test_dataloader.dataset.ann_file={instances}')
    assert_one_line_error(result, 'test.py', str(instances),
                          'is not a COCO panoptic annotation file')
    assert snapshot(work) is None


def test_metric_annotation_file_missing(data, tmp_path, tiny_checkpoint):
    work = tmp_path / 'work'
    (data / 'annotations' / 'instances_val.json').unlink()
    result = _test(data, tiny_checkpoint, work)
    assert_one_line_error(result, 'test.py', 'instances annotation file of OpenVocabCocoMetric '
                          'not found', 'instances_val.json')
    assert snapshot(work) is None


def test_unknown_category_in_a_segment(data, tmp_path, tiny_checkpoint):
    path = data / 'annotations' / 'panoptic_val.json'
    content = json.loads(path.read_text())
    content['annotations'][1]['segments_info'][0]['category_id'] = 77
    path.write_text(json.dumps(content))
    work = tmp_path / 'work'
    result = _test(data, tiny_checkpoint, work)
    assert_one_line_error(result, 'test.py', 'names category 77', 'panoptic_val.json')
    assert snapshot(work) is None

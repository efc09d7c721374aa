"""Vocabularies: any list of one or more names works everywhere; a bad one fails in one line."""
import pytest

from openseg_core.inference import Segmenter
from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool_in_process,
                                  snapshot, tiny_run_options)


@pytest.fixture(scope='module')
def segmenter(tiny_checkpoint):
    return Segmenter(TINY_CONFIG, tiny_checkpoint)


@pytest.mark.parametrize('things, stuff, message', [
    (' , ', '', 'the vocabulary is empty'),
    ('dog,cat,dog', '', "repeats class names ['dog']"),
    ('sky', 'sky', "repeats class names ['sky']"),
])
def test_bad_demo_vocabulary(tmp_path, photo, things, stuff, message):
    out = tmp_path / 'out'
    result = run_tool_in_process(['demo.py', photo, TINY_CONFIG, photo, '--things', things,
                                  '--stuff', stuff, '--out-dir', out])
    assert_one_line_error(result, 'demo.py', message)
    assert snapshot(out) is None


def test_bad_python_vocabulary(segmenter, photo):
    with pytest.raises(TypeError, match=r"not the string 'dog,cat'; e.g. \['dog', 'cat'\]"):
        segmenter(str(photo), 'dog,cat')
    with pytest.raises(ValueError, match='the vocabulary is empty'):
        segmenter(str(photo), [], [])


@pytest.mark.parametrize('things, stuff', [(['dog'], []), ([], ['grass']),
                                           (['horse'], ['grass'])])
def test_one_or_two_names_work_in_every_task(segmenter, photo, things, stuff):
    result = segmenter(str(photo), things, stuff, score_thr=0.0)
    assert result['panoptic'].shape == result['semantic'].shape == (48, 64)
    assert set(result['semantic'].ravel().tolist()) <= set(range(len(things + stuff)))
    assert all(segment['label'] in things + stuff for segment in result['segments'])
    # Instances are things only; at most (queries x things) of them exist.
    assert {i['label'] for i in result['instances']} <= set(things)
    assert len(result['instances']) <= 20 * len(things)


@pytest.mark.parametrize('task', ['instance', 'semantic'])
def test_demo_with_one_name(tmp_path, photo, tiny_checkpoint, task):
    out = tmp_path / 'out'
    result = run_tool_in_process(['demo.py', photo, TINY_CONFIG, tiny_checkpoint, '--things',
                                  'dog', '--task', task, '--out-dir', out])
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ['photo.json', 'photo.png']


@pytest.mark.parametrize('option, message', [
    ('test_dataloader.dataset.metainfo.classes=[circle,squar]',
     "classes ['squar'] are not among its categories"),
    ('test_dataloader.dataset.metainfo.thing_classes=[sky]',
     'puts sky (stuff) in the other group than the file does'),
])
def test_bad_metainfo_classes(shapes_root, tmp_path, tiny_checkpoint, option, message):
    work = tmp_path / 'work'
    result = run_tool_in_process(['test.py', TINY_CONFIG, tiny_checkpoint, '--work-dir', work,
                                  '--cfg-options', *tiny_run_options(shapes_root), option])
    assert_one_line_error(result, 'test.py', message, 'panoptic_val.json')
    assert snapshot(work) is None

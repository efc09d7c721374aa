"""Bad input: one clear line on stderr, exit code 2, nothing half-written."""
import json
import shutil

import pytest
import torch

from openseg_core.testing import TINY_CONFIG, run_tool, tiny_run_options


def _assert_one_line_error(result, prog, pattern):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith(f'{prog}: error:')]
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    assert pattern in lines[0], lines[0]


@pytest.fixture
def broken_root(shapes_root, tmp_path):
    root = tmp_path / 'shapes'
    shutil.copytree(shapes_root, root)
    return root


def _test(root, work, *extra):
    # A checkpoint is not needed to reach the data: an absent one is reported first, so pass
    # an existing file as a stand-in.
    return run_tool(['test.py', TINY_CONFIG, root / 'shapes.json', '--work-dir', work,
                     '--cfg-options', *tiny_run_options(root), *extra])


def test_corrupt_image(broken_root, tmp_path, full_run):
    (broken_root / 'images' / 'val' / '000002.png').write_bytes(b'not a png')
    work = tmp_path / 'work'
    result = run_tool(['test.py', TINY_CONFIG, full_run[0] / 'iter_4.pth', '--work-dir',
                       work, '--cfg-options', *tiny_run_options(broken_root)])
    _assert_one_line_error(result, 'test.py', '000002.png')
    assert not work.exists()


def test_missing_annotation_file(broken_root, tmp_path):
    (broken_root / 'annotations' / 'panoptic_train.json').unlink()
    work = tmp_path / 'work'
    result = run_tool(['train.py', TINY_CONFIG, '--work-dir', work, '--cfg-options',
                       *tiny_run_options(broken_root)])
    _assert_one_line_error(result, 'train.py', 'panoptic annotation file not found')
    assert not work.exists()


def test_unknown_category(broken_root, tmp_path):
    path = broken_root / 'annotations' / 'panoptic_val.json'
    data = json.loads(path.read_text())
    data['annotations'][1]['segments_info'][0]['category_id'] = 77
    path.write_text(json.dumps(data))
    work = tmp_path / 'work'
    _assert_one_line_error(_test(broken_root, work), 'test.py', 'names category 77')
    assert not work.exists()


def test_config_typo_suggests_the_name(shapes_root, tmp_path):
    work = tmp_path / 'work'
    result = _test(shapes_root, work, 'model.head.type=TextClassiferHead')
    _assert_one_line_error(result, 'test.py', "did you mean 'TextClassifierHead'")
    assert not work.exists()


def test_empty_vocabulary(shapes_root, tmp_path):
    image = shapes_root / 'images' / 'val' / '000001.png'
    result = run_tool(['demo.py', image, TINY_CONFIG, image, '--things', ' , ',
                       '--out-dir', tmp_path / 'out'])
    _assert_one_line_error(result, 'demo.py', 'vocabulary is empty')
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp runs on a GPU')
def test_amp_without_a_gpu(shapes_root, tmp_path):
    work = tmp_path / 'work'
    result = run_tool(['train.py', TINY_CONFIG, '--amp', '--work-dir', work,
                       '--cfg-options', *tiny_run_options(shapes_root)])
    _assert_one_line_error(result, 'train.py', '--amp needs a CUDA GPU')
    assert not work.exists()


def test_config_names_fail_in_one_line(tmp_path):
    result = run_tool(['train.py', 'seem::seem_tiny.py'], cwd=tmp_path)
    _assert_one_line_error(result, 'train.py', "config 'seem::seem_tiny.py' needs plugin 'seem', "
                           'which is not installed; install the distribution that provides it')
    (tmp_path / 'mine.py').write_text("_base_ = ['openseg_core::reference/ovseg_tiny.py']\n")
    result = run_tool(['train.py', 'mine.py'], cwd=tmp_path)
    _assert_one_line_error(result, 'train.py',
                           "did you mean 'openseg_core::reference/ovseg_tiny_shapes.py'?")
    assert [p.name for p in tmp_path.iterdir()] == ['mine.py']

"""Bad input: one clear line on stderr, exit code 2, nothing half-written.

The cases here run the tools in a fresh interpreter, as a user does (the exit status, the
output when it is not a terminal: no colour codes); the rest of the catalogue, in
``test_bad_*.py``, runs them in-process.
"""
import shutil

import pytest
import torch

from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool,
                                  run_tool_in_process, tiny_run_options)


def _assert_one_line_error(result, prog, pattern):
    assert_one_line_error(result, prog, pattern)


@pytest.fixture
def broken_root(shapes_root, tmp_path):
    root = tmp_path / 'shapes'
    shutil.copytree(shapes_root, root)
    return root


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


@pytest.mark.skipif(torch.cuda.is_available(), reason='--amp runs on a GPU')
def test_amp_without_a_gpu(shapes_root, tmp_path):
    work = tmp_path / 'work'
    result = run_tool_in_process(['train.py', TINY_CONFIG, '--amp', '--work-dir', work,
                                  '--cfg-options', *tiny_run_options(shapes_root)])
    _assert_one_line_error(result, 'train.py', '--amp needs a CUDA GPU')
    assert not work.exists()

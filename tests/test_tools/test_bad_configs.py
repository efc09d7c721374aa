"""Bad configs and options given to the tools: one line naming the file, key or option."""
import pytest

from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool_in_process,
                                  snapshot, tiny_run_options)


def _train(root, work, *extra, config=TINY_CONFIG):
    return run_tool_in_process(['train.py', config, '--work-dir', work, '--cfg-options',
                                *tiny_run_options(root), *extra])


def test_config_file_not_found(tmp_path):
    result = run_tool_in_process(['train.py', 'configs/mask2former_r50.py'], cwd=tmp_path)
    assert_one_line_error(result, 'train.py', 'config file not found',
                          'configs/mask2former_r50.py')
    assert snapshot(tmp_path) == []


def test_config_with_a_syntax_error(tmp_path):
    (tmp_path / 'mine.py').write_text("model = dict(type='OpenVocabMaskSegmentor'\n")
    before = snapshot(tmp_path)
    result = run_tool_in_process(['test.py', 'mine.py', 'ckpt.pth'], cwd=tmp_path)
    assert_one_line_error(result, 'test.py', 'config mine.py has a syntax error', 'line 1')
    assert snapshot(tmp_path) == before


def test_config_names_fail_in_one_line(tmp_path):
    result = run_tool_in_process(['train.py', 'seem::seem_tiny.py'], cwd=tmp_path)
    assert_one_line_error(result, 'train.py', "config 'seem::seem_tiny.py' needs plugin 'seem', "
                          'which is not installed; install the distribution that provides it')
    (tmp_path / 'mine.py').write_text("_base_ = ['openseg_core::reference/ovseg_tiny.py']\n")
    result = run_tool_in_process(['train.py', 'mine.py'], cwd=tmp_path)
    assert_one_line_error(result, 'train.py',
                          "did you mean 'openseg_core::reference/ovseg_tiny_shapes.py'?")
    assert [p.name for p in tmp_path.iterdir()] == ['mine.py']


@pytest.mark.parametrize('option, message', [
    ('model.query_decoder.num_querys=50',
     "model.query_decoder.num_querys: MaskedAttentionQueryDecoder has no option 'num_querys'; "
     "did you mean 'num_queries'?"),
    ('train_cfg.max_iter=10', "did you mean 'max_iters'?"),
    ('model.head.type=TextClassiferHead', "did you mean 'TextClassifierHead'"),
])
def test_typo_in_cfg_options(shapes_root, tmp_path, option, message):
    work = tmp_path / 'work'
    assert_one_line_error(_train(shapes_root, work, option), 'train.py', message)
    assert snapshot(work) is None


def test_cfg_options_without_a_value(shapes_root, tmp_path):
    work = tmp_path / 'work'
    result = _train(shapes_root, work, 'model.query_decoder.num_queries')
    assert_one_line_error(result, 'train.py', '--cfg-options takes KEY=VALUE pairs',
                          "'model.query_decoder.num_queries'")
    assert snapshot(work) is None


def test_missing_data_root(tmp_path):
    work = tmp_path / 'work'
    result = _train(tmp_path / 'data' / 'coco', work)
    assert_one_line_error(result, 'train.py', 'panoptic annotation file not found',
                          'openseg shapes DIR')
    assert snapshot(work) is None


@pytest.mark.parametrize('argv, message', [
    (['test.py', TINY_CONFIG, 'c.pth', '--out', 'results.json'], '--out must end in .pkl'),
    (['demo.py', 'a.jpg', TINY_CONFIG, 'c.pth', '--score-thr', '5'],
     '--score-thr must be in [0, 1]'),
    (['demo.py', 'a.jpg', TINY_CONFIG, 'c.pth', '--topk', '0'], '--topk must be at least 1'),
    (['train.py', TINY_CONFIG, '--launcher', 'kubernetes'], "invalid choice: 'kubernetes'"),
])
def test_bad_option_values(tmp_path, argv, message):
    result = run_tool_in_process(argv, cwd=tmp_path)
    assert_one_line_error(result, argv[0], message)
    assert snapshot(tmp_path) == []


def test_gpu_device_without_a_gpu(tmp_path, photo):
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    result = run_tool_in_process(['demo.py', photo, TINY_CONFIG, photo, '--things', 'circle',
                                  '--device', 'cuda', '--out-dir', tmp_path / 'out'])
    assert_one_line_error(result, 'demo.py', '--device cuda needs a CUDA GPU', '--device cpu')
    assert snapshot(tmp_path / 'out') is None

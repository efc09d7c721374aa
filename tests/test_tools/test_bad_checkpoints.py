"""Bad checkpoints given to tools/test.py, tools/train.py --resume, tools/demo.py,
tools/convert_checkpoint.py and ``Segmenter``: one line that says what is wrong with the file
and what to do; never torch's advice to load it with ``weights_only=False``."""
import pickle

import pytest
import torch

from openseg_core.inference import Segmenter
from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool_in_process,
                                  snapshot, tiny_run_options)
from openseg_core.utils.checkpoint import CheckpointError


def _test(root, checkpoint, work, *extra):
    return run_tool_in_process(['test.py', TINY_CONFIG, checkpoint, '--work-dir', work,
                                '--cfg-options', *tiny_run_options(root), *extra])


class Payload:
    """Stands for an object a crafted pickle would run code through."""


@pytest.fixture
def broken_files(tmp_path, tiny_checkpoint):
    data = tiny_checkpoint.read_bytes()
    files = dict(truncated=tmp_path / 'truncated.pth', empty=tmp_path / 'empty.pth',
                 pickled=tmp_path / 'pickled.pth', text=tmp_path / 'notes.pth',
                 raw_pickle=tmp_path / 'raw.pkl')
    files['truncated'].write_bytes(data[:len(data) // 2])
    files['empty'].write_bytes(b'')
    files['text'].write_text('hello')
    torch.save(dict(state_dict={}, payload=Payload()), files['pickled'])
    with open(files['raw_pickle'], 'wb') as handle:
        pickle.dump(dict(state_dict={}), handle)
    return files


@pytest.mark.parametrize('kind, message', [
    ('truncated', 'is not a readable PyTorch checkpoint (truncated, corrupt'),
    ('empty', 'is empty (0 bytes)'),
    ('text', 'is not a readable PyTorch checkpoint'),
    ('pickled', 'holds Python objects besides tensors (it pickles '
                'tests.test_tools.test_bad_checkpoints.Payload)'),
    ('raw_pickle', 'is not a readable PyTorch checkpoint (not written by torch.save)'),
])
def test_unreadable_checkpoint(shapes_root, tmp_path, broken_files, kind, message):
    work = tmp_path / 'work'
    result = _test(shapes_root, broken_files[kind], work)
    assert_one_line_error(result, 'test.py', str(broken_files[kind]), message)
    assert snapshot(work) is None


def test_missing_checkpoint(shapes_root, tmp_path):
    result = _test(shapes_root, tmp_path / 'iter_9.pth', tmp_path / 'work')
    assert_one_line_error(result, 'test.py', 'checkpoint not found', 'iter_9.pth')
    assert snapshot(tmp_path / 'work') is None


def test_checkpoint_of_another_config(shapes_root, tmp_path, tiny_checkpoint):
    work = tmp_path / 'work'
    result = _test(shapes_root, tiny_checkpoint, work, 'model.query_decoder.num_queries=7')
    assert_one_line_error(result, 'test.py', 'does not fit the model',
                          'query_decoder.query_feat.weight (20, 64) in the checkpoint, (7, 64) '
                          'in the model', 'another number of queries', '--partial-load')
    assert snapshot(work) is None


def test_config_that_loads_partially_for_training_still_evaluates_strictly(
        shapes_root, tmp_path, tiny_checkpoint):
    # e.g. PixelLLM's referring config starts its training from the trace model (load_strict
    # False for its new mask head); a checkpoint evaluated with it must still fit.
    work = tmp_path / 'work'
    result = _test(shapes_root, tiny_checkpoint, work, 'model.query_decoder.num_queries=7',
                   'load_strict=False')
    assert_one_line_error(result, 'test.py', 'does not fit the model', '--partial-load')
    assert snapshot(work) is None


def test_checkpoint_of_another_model(tmp_path, photo):
    foreign = tmp_path / 'detector.pth'
    torch.save(dict(state_dict={'roi_head.bbox_head.fc_cls.weight': torch.zeros(81, 1024),
                                'rpn_head.rpn_conv.weight': torch.zeros(256, 256, 3, 3)}),
               foreign)
    out = tmp_path / 'out'
    result = run_tool_in_process(['demo.py', photo, TINY_CONFIG, foreign, '--things', 'circle',
                                  '--out-dir', out])
    assert_one_line_error(result, 'demo.py', 'made for another model',
                          'only 0 of its 2 weights', 'tools/convert_checkpoint.py')
    assert snapshot(out) is None


def test_partial_load_only_when_asked(tiny_checkpoint, tmp_path):
    state = torch.load(tiny_checkpoint, map_location='cpu', weights_only=True)['state_dict']
    del state['head.logit_scale']
    edited = tmp_path / 'edited.pth'
    torch.save(dict(state_dict=state), edited)
    with pytest.raises(CheckpointError, match=r'1 model weights missing from it '
                                              r'\(head.logit_scale\)'):
        Segmenter(TINY_CONFIG, edited)
    segmenter = Segmenter(TINY_CONFIG, edited, strict=False)
    # What fits was loaded.
    assert torch.equal(segmenter.model.query_decoder.query_feat.weight,
                       state['query_decoder.query_feat.weight'])


def test_resume_without_training_state(shapes_root, tmp_path, weights_only_checkpoint):
    work = tmp_path / 'work'
    result = run_tool_in_process(['train.py', TINY_CONFIG, '--resume', weights_only_checkpoint,
                                  '--work-dir', work, '--cfg-options',
                                  *tiny_run_options(shapes_root)])
    assert_one_line_error(result, 'train.py', 'cannot be resumed',
                          f'load_from={weights_only_checkpoint}')
    assert snapshot(work) is None


def test_resume_with_another_configs_checkpoint(shapes_root, tmp_path, tiny_checkpoint):
    work = tmp_path / 'work'
    result = run_tool_in_process(['train.py', TINY_CONFIG, '--resume', tiny_checkpoint,
                                  '--work-dir', work, '--cfg-options',
                                  *tiny_run_options(shapes_root),
                                  'model.query_decoder.num_queries=7'])
    assert_one_line_error(result, 'train.py', 'does not fit the model',
                          '--resume needs a checkpoint of this config')
    assert snapshot(work) is None


@pytest.mark.parametrize('args, message', [
    (['xdecoder_official'], 'give CONVERTER SRC DST'),
    (['no_such_converter', 'a.pt', 'b.pth'], "unknown converter 'no_such_converter'"),
    (['xdecoder_official', 'missing.pt', 'b.pth'], 'official checkpoint not found'),
])
def test_convert_checkpoint_arguments(tmp_path, args, message):
    result = run_tool_in_process(['convert_checkpoint.py', *args], cwd=tmp_path)
    assert_one_line_error(result, 'convert_checkpoint.py', message)
    assert snapshot(tmp_path) == []


def test_convert_a_file_that_is_not_the_official_checkpoint(tmp_path, broken_files,
                                                            tiny_checkpoint):
    pytest.importorskip('openseg_xdecoder')
    dst = tmp_path / 'out' / 'converted.pth'
    result = run_tool_in_process(['convert_checkpoint.py', 'xdecoder_official',
                                  broken_files['truncated'], dst])
    assert_one_line_error(result, 'convert_checkpoint.py', 'truncated, corrupt')
    result = run_tool_in_process(['convert_checkpoint.py', 'xdecoder_official',
                                  tiny_checkpoint, dst])
    assert_one_line_error(result, 'convert_checkpoint.py', 'cannot convert',
                          'is it the official checkpoint')
    assert snapshot(tmp_path / 'out') is None

"""The small CLIP trained on shapes: the config trains and evaluates through the tools, the
build saves an open_clip checkpoint that the text encoder loads by its alias, and a missing
file is an error rather than random weights."""
import json
import os
import subprocess
import sys

import open_clip
import pytest
import torch

from openseg_core.datasets.shapes import ShapesSpec, generate_shapes
from openseg_core.models import OpenCLIPTextEncoder
from openseg_core.models.clip import pretrained
from openseg_core.testing import run_tool_in_process
from openseg_core.utils.checkpoint import load_state_dict_file

CONFIG = 'openseg_core::clip/shapes_clip_rn.py'
#: A 2-iteration run on a handful of images.
TINY = ['train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'train_cfg.max_iters=2',
        'train_cfg.val_interval=2', 'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
        'param_scheduler.1.end=2', 'default_hooks.logger.interval=1']


def _data_options(root):
    return [f'train_dataloader.dataset.data_root={root}/'] + [
        f'{loader}.dataset.datasets.{i}.data_root={root}/' for i in (0, 1)
        for loader in ('val_dataloader', 'test_dataloader')]


@pytest.fixture(scope='module')
def caption_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('clip') / 'shapes'
    generate_shapes(str(root), ShapesSpec(image_size=64, splits=dict(pretrain=12, val=3,
                                                                     val_open=3)))
    return root


def test_config_trains_resumes_and_reports_zero_shot(caption_root, tmp_path):
    work = tmp_path / 'work'
    options = _data_options(caption_root) + TINY
    result = run_tool_in_process(['train.py', CONFIG, '--work-dir', work, '--cfg-options',
                                  *options])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'loss_clip' in result.stdout + result.stderr
    resumed = run_tool_in_process(['train.py', CONFIG, '--work-dir', work, '--resume',
                                   '--cfg-options', *options, 'train_cfg.max_iters=3',
                                   'param_scheduler.1.end=3'])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed' in (resumed.stdout + resumed.stderr).lower()
    ckpt = (work / 'last_checkpoint').read_text().strip()
    tested = run_tool_in_process(['test.py', CONFIG, ckpt, '--work-dir', tmp_path / 'test',
                                  '--cfg-options', *options])
    assert tested.returncode == 0, tested.stderr[-3000:]
    for key in ('zero_shot/top1_seen', 'zero_shot/top1_held_out', 'zero_shot/top1_stuff'):
        assert key in tested.stdout + tested.stderr


def test_build_saves_an_open_clip_checkpoint_behind_the_alias(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.HOME_ENV, str(tmp_path))
    monkeypatch.delenv(pretrained.BUILD_ENV, raising=False)
    target = pretrained.shapes_clip_file()
    os.makedirs(os.path.dirname(target))
    stale = os.path.join(os.path.dirname(target), 'shapes_clip-000000000000.pt')
    open(stale, 'w').close()
    tiny = ['--pretrain', '8', '--val', '2', '--val-open', '2', '--image-size', '64',
            '--cfg-options'] + TINY
    assert pretrained.build_shapes_clip(target, build_args=tiny) == target
    assert pretrained.shapes_clip_path(build=False) == target
    assert not os.path.exists(stale)
    assert sorted(os.listdir(os.path.dirname(target))) == sorted(
        ['.shapes_clip.lock'] + [os.path.basename(target)[:-3] + s
                                 for s in ('.pt', '.json', '.log')])
    # The command prints the cached file without building it again.
    env = dict(os.environ, OPENSEG_HOME=str(tmp_path))
    listed = subprocess.run([sys.executable, '-m', 'openseg_core.cli', 'pretrain-clip'],
                            env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and listed.stdout.strip() == target, listed.stderr[-2000:]
    record = json.load(open(target[:-3] + '.json'))
    assert record['key'] in target and 'top1_seen' in str(record['zero_shot'])

    state = torch.load(target, map_location='cpu', weights_only=True)
    assert {'visual.attnpool.c_proj.weight', 'token_embedding.weight', 'positional_embedding',
            'ln_final.weight', 'text_projection', 'logit_scale'} <= set(state)
    open_clip.create_model('ShapesCLIP-RN').load_state_dict(state, strict=True)
    assert load_state_dict_file('openseg://shapes_clip').keys() == state.keys()
    encoder = OpenCLIPTextEncoder(model_name='ShapesCLIP-RN', pretrained='openseg://shapes_clip')
    assert torch.equal(encoder.tower.token_embedding.weight, state['token_embedding.weight'])
    assert encoder.encode_vocabulary(['star', 'circle']).shape == (2, 64)
    # The frozen tower is left out of checkpoints and checked against the file's digest.
    saved = encoder.state_dict()
    assert not any(k.startswith('tower.transformer') for k in saved)
    OpenCLIPTextEncoder(model_name='ShapesCLIP-RN',
                        pretrained='openseg://shapes_clip').load_state_dict(saved)


def test_missing_checkpoint_is_an_error_not_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.HOME_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match='openseg pretrain-clip'):
        pretrained.shapes_clip_path(build=False)
    monkeypatch.setenv(pretrained.BUILD_ENV, '0')
    with pytest.raises(FileNotFoundError, match='not built'):
        load_state_dict_file('openseg://shapes_clip')
    with pytest.raises(ValueError, match='unknown checkpoint alias'):
        load_state_dict_file('openseg://nothing')
    assert not os.listdir(tmp_path)


def test_key_follows_the_sources(monkeypatch):
    key = pretrained.shapes_clip_key()
    assert len(key) == 12 and key == pretrained.shapes_clip_key()
    monkeypatch.setitem(pretrained.BUILD, 'pretrain', pretrained.BUILD['pretrain'] + 1)
    assert pretrained.shapes_clip_key() != key


def test_short_text_path_equals_open_clips_encode_text():
    from openseg_core.models.clip import ContrastiveCLIP
    torch.manual_seed(0)
    model = ContrastiveCLIP('ShapesCLIP-RN').eval()
    texts = ['a photo of a star!!', 'sky', 'a small red circle on the left, sand above water.']
    with torch.no_grad():
        full = torch.nn.functional.normalize(model.clip.encode_text(model.tokenizer(texts)),
                                             dim=-1)
        assert torch.allclose(model.encode_text(texts), full, atol=1e-5)


"""APE through the command-line tools: a tiny multi-source training, evaluation of its
checkpoint (panoptic / semantic / box and mask AP, and referring), the demo's prompts task,
the converter and the prompt benchmark."""
import json
import re

import pytest
import torch

from openseg_core.engine.cli import load_config
from openseg_core.testing import run_tool, run_tool_in_process

CONFIG = 'ape::ape_tiny_shapes.py'


def _data_options(root, split='val'):
    root = f'{root}/'
    opts = [f'train_dataloader.dataset.datasets.{i}.data_root={root}' for i in range(2)]
    opts += ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'train_dataloader.batch_size=2', 'train_dataloader.sampler.batch_size=2',
             'train_dataloader.sampler.source_ratio=[1,1]']
    for loader in ('val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False', f'{loader}.batch_size=3']
    for evaluator in ('val_evaluator', 'test_evaluator'):
        opts += [f'{evaluator}.0.ann_file={root}annotations/panoptic_{split}.json',
                 f'{evaluator}.0.seg_prefix={root}annotations/panoptic_{split}/',
                 f'{evaluator}.2.ann_file={root}annotations/instances_{split}.json']
    return opts


@pytest.fixture(scope='module')
def trained(shapes_root, tmp_path_factory):
    """Two iterations of the tiny config (3 sources' worth of losses), validated."""
    work = tmp_path_factory.mktemp('ape_train')
    result = run_tool(['train.py', CONFIG, '--work-dir', work, '--cfg-options',
                       *_data_options(shapes_root), 'train_cfg.max_iters=2',
                       'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
                       'default_hooks.checkpoint.interval=2'])
    assert result.returncode == 0, result.stderr[-3000:]
    return work / 'iter_2.pth', result.stdout + result.stderr


def test_training_mixes_sources_and_validates_every_output(trained):
    _, log = trained
    for key in ('loss_cls', 'enc.loss_cls', 'loss_mask', 'coco_panoptic/PQ', 'mIoU',
                'coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in log, key


def test_test_tool_scores_referring_boxes_and_masks(trained, shapes_root):
    checkpoint, _ = trained
    root = f'{shapes_root}/'
    result = run_tool_in_process(['test.py', 'ape::ape_tiny_shapes_referring.py', checkpoint,
                                  '--cfg-options', f'test_dataloader.dataset.data_root={root}',
                                  'test_dataloader.num_workers=0',
                                  'test_dataloader.persistent_workers=False'])
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert re.search(r'refer_loc/Acc@0\.5: \d', log) and re.search(r'refer/cIoU: \d', log)


def test_demo_detects_a_mix_of_words_and_sentences(trained, shapes_root, tmp_path):
    checkpoint, _ = trained
    image = sorted((shapes_root / 'images' / 'val').iterdir())[0]
    out = tmp_path / 'out'
    result = run_tool_in_process(['demo.py', image, CONFIG, checkpoint, '--task', 'prompts',
                                  '--text', 'circle,the red square on the left,sky',
                                  '--out-dir', out])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / 'prompts.json').read_text())
    detections = report['images'][0]['detections']
    prompts = {d['prompt'] for d in detections}
    # Every prompt's best detection is reported, each with a box.
    assert prompts == {'circle', 'the red square on the left', 'sky'}
    assert all(len(d['box']) == 4 for d in detections)
    assert (out / f'{image.stem}_prompts.png').is_file()
    result = run_tool_in_process(['demo.py', image, CONFIG, checkpoint, '--task', 'prompts',
                                  '--out-dir', tmp_path / 'none'])
    assert result.returncode == 2 and "needs prompts" in result.stderr
    assert not (tmp_path / 'none').exists()


def test_convert_checkpoint_tool(tmp_path):
    official = {'model_vision.class_embed.0.bias0': torch.tensor([-4.6]),
                'model_vision.transformer.decoder.class_embed.0.bias0': torch.tensor([-4.6]),
                'model_vision.model_language.net.logit_scale': torch.tensor(4.0),
                'model_vision.name_prompt_fusion_feature': torch.zeros(1, 1, 8)}
    src, dst = tmp_path / 'model_final.pth', tmp_path / 'out' / 'ape.pth'
    torch.save(dict(model=official), src)
    result = run_tool_in_process(['convert_checkpoint.py', 'ape_official', src, dst])
    assert result.returncode == 0, result.stderr
    state = torch.load(dst, weights_only=True)['state_dict']
    assert set(state) == {'cls_branches.0.bias0'}


def test_prompt_benchmark_compares_both_routings(capsys):
    """The suite ``tools/benchmark.py CONFIG --suite ape.prompt_sweep`` runs (called here
    in-process with the tool's common options)."""
    from types import SimpleNamespace

    from openseg_ape.benchmarks.prompt_sweep import prompt_sweep
    args = SimpleNamespace(size=64, iters=1, warmup=0, device='cpu')
    prompt_sweep(load_config(CONFIG), args, ['--vocab-sizes', '3', '30', '--sentences', '2'])
    out = capsys.readouterr().out
    for routing in ('per_prompt', 'fuse_all'):
        for label in ('3 + 2', '30 + 2'):
            assert re.search(rf'{routing} +{re.escape(label)} +\d+ ms', out), out
    assert re.search(r'30 \+ 2 prompts cost \d+\.\d\dx of 3 \+ 2', out)
    with pytest.raises(ValueError, match='ape.prompt_sweep: vocabulary sizes must be positive'):
        prompt_sweep(load_config(CONFIG), args, ['--vocab-sizes', '0'])
    with pytest.raises(ValueError, match='unrecognized arguments: --bogus'):
        prompt_sweep(load_config(CONFIG), args, ['--bogus'])

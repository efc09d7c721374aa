"""Train a model: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]``.

A config with ``strategy=`` (FSDP: ``openseg_core::_base_/strategies/fsdp.py``) trains with
mmengine's FlexibleRunner (:class:`~openseg_core.engine.OpenSegFlexibleRunner`), any other
with :class:`~openseg_core.engine.OpenSegRunner`; see docs/distributed.md.
"""
import argparse
import os
import os.path as osp

import torch

from openseg_core.engine import OpenSegFlexibleRunner, OpenSegRunner
from openseg_core.engine.cli import (add_common_args, cleanup_on_error, configure_allocator,
                                     load_config, run_tool)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=os.path.basename(__file__), description='Train an openseg model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the work dir')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    configure_allocator(cfg)
    if args.partial_load:
        cfg.load_strict = False
    if args.amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); '
                               'train without --amp on a CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'checkpoint to resume not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume
    runner = OpenSegFlexibleRunner if cfg.get('strategy') else OpenSegRunner
    try:
        with cleanup_on_error(cfg.work_dir):
            runner.from_cfg(cfg).train()
    finally:
        # torch's advice: a process group left to the interpreter's exit can abort there
        # (gloo's threads; seen once in the 2-process test as SIGABRT, "terminate called
        # without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == '__main__':
    run_tool(main, 'train.py')

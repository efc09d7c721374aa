"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--show-dir DIR]``."""
import argparse
import os
import os.path as osp

from openseg_core.engine import OpenSegRunner
from openseg_core.engine.cli import (add_common_args, cleanup_on_error, configure_allocator,
                                     load_config, run_tool)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=os.path.basename(__file__), description='Evaluate an openseg model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--show-dir', help='write overlays of the predictions here '
                        '(relative to the work dir\'s timestamped folder)')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must end in .pkl, got {args.out}')
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    configure_allocator(cfg)
    # A config's load_strict is about starting a training from another model (a new head);
    # the checkpoint evaluated here must be one of this config unless --partial-load.
    cfg.load_strict = not args.partial_load
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    if args.show_dir:
        vis = cfg.default_hooks.visualization
        vis.update(draw=True, test_out_dir=args.show_dir, interval=1)
    if args.out:
        cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
            cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=args.out))
    with cleanup_on_error(cfg.work_dir):
        OpenSegRunner.from_cfg(cfg).test()


if __name__ == '__main__':
    run_tool(main, 'test.py')

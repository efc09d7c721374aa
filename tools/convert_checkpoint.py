"""Convert an official checkpoint to openseg's module names with a plugin's converter.

    python tools/convert_checkpoint.py xdecoder_official xdecoder_focalt_last.pt out.pth
    python tools/convert_checkpoint.py --list

The source is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
so a crafted file cannot run code. The output is written atomically (nothing is left behind
on failure) as ``{'state_dict': ..., 'meta': {'converted_from': SRC, 'converter': NAME}}``.
"""
import argparse
import os
import tempfile

import torch

from openseg_core.engine.cli import UserError, run_tool
from openseg_core.plugins import load_plugins
from openseg_core.utils.checkpoint import read_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('converter', nargs='?', help='converter name (see --list)')
    parser.add_argument('src', nargs='?', help='official checkpoint')
    parser.add_argument('dst', nargs='?', help='output .pth')
    parser.add_argument('--list', action='store_true', help='list the installed converters')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    converters = load_plugins().checkpoint_converters()
    if args.list:
        for name in sorted(converters):
            print(name)
        return
    if not (args.converter and args.src and args.dst):
        raise UserError('give CONVERTER SRC DST (or --list)')
    if args.converter not in converters:
        raise UserError(f'unknown converter {args.converter!r}; installed: '
                        f'{", ".join(sorted(converters)) or "none"}')
    state = read_checkpoint(args.src, 'official checkpoint')
    try:
        converted = converters[args.converter](state)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f'converter {args.converter!r} cannot convert {args.src} '
                        f'({type(exc).__name__}: {exc}); is it the official checkpoint this '
                        'converter is for?') from None
    if not converted:
        raise UserError(f'converter {args.converter!r} found none of its weights in {args.src}; '
                        'is it the official checkpoint this converter is for?')
    out_dir = os.path.dirname(os.path.abspath(args.dst))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix='.pth')
    os.close(fd)
    try:
        torch.save(dict(state_dict=converted, meta=dict(converted_from=args.src,
                                                        converter=args.converter)), tmp)
        os.replace(tmp, args.dst)
    except BaseException:
        os.remove(tmp)
        raise
    print(f'{len(converted)} tensors -> {args.dst}')


if __name__ == '__main__':
    run_tool(main, 'convert_checkpoint.py')

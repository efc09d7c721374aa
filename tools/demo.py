"""Segment an image with a vocabulary of your choice and write an overlay and a JSON.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --things "circle,square" --stuff "sky,grass"
"""
import argparse
import json
import os
import tempfile

import mmcv

from openseg_core.engine.cli import run_tool
from openseg_core.inference import Segmenter, draw_overlay


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--things', default='', help='comma-separated countable classes')
    parser.add_argument('--stuff', default='', help='comma-separated amorphous classes')
    parser.add_argument('--out-dir', default='demo_out')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args()


def _write_atomically(path: str, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def main():
    args = parse_args()
    things, stuff = args.things.split(','), args.stuff.split(',')
    if not any(s.strip() for s in things + stuff):
        raise ValueError('the vocabulary is empty: pass --things and/or --stuff, e.g. '
                         '--things "dog,cat"')
    if not os.path.isfile(args.image):
        raise FileNotFoundError(f'image not found: {args.image}')
    result = Segmenter(args.config, args.checkpoint, args.device)(args.image, things, stuff)
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.image))[0]
    overlay = draw_overlay(mmcv.imread(args.image, channel_order='rgb'), result['panoptic'],
                           result['segments'])
    png, js = (os.path.join(args.out_dir, f'{stem}.{ext}') for ext in ('png', 'json'))
    _write_atomically(png, lambda p: overlay.save(p, format='PNG'))
    _write_atomically(js, lambda p: json.dump(dict(image=args.image, segments=result['segments']),
                                              open(p, 'w'), indent=1))
    print(f"{len(result['segments'])} segments -> {png}, {js}")


if __name__ == '__main__':
    run_tool(main, 'demo.py')

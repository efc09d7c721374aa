"""Run an inference task on images and write overlays and a JSON.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --things "circle,square" --stuff "sky,grass"
    python tools/demo.py IMAGE CONFIG CHECKPOINT --task referring --text "the red square"
    python tools/demo.py IMAGE_DIR CONFIG CHECKPOINT --task region_retrieval --text "a star"

IMAGE is an image file or a directory of images (all of them form one batch). ``--task``
takes the core's ``panoptic`` (default) and what the installed plugins contribute
(``openseg plugins`` lists them, e.g. X-Decoder's referring, captioning, retrieval,
region_retrieval, referring_captioning).
"""
import argparse
import json
import os
import tempfile

import mmcv
import numpy as np
import torch

from openseg_core.engine.cli import run_tool
from openseg_core.inference import (Segmenter, draw_overlay, drawable_segments,
                                    preprocess_images)
from openseg_core.plugins import load_plugins

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', help='image file, or a directory of images')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--task', default='panoptic', help='inference task (default panoptic)')
    parser.add_argument('--things', default='', help='comma-separated countable classes')
    parser.add_argument('--stuff', default='', help='comma-separated amorphous classes')
    parser.add_argument('--text', help='phrase or sentence for language tasks')
    parser.add_argument('--beam-size', type=int, default=None, help='captioning beam')
    parser.add_argument('--topk', type=int, default=1, help='images kept by retrieval tasks')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='instance task: lowest score drawn')
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


def _images(path: str) -> list:
    if os.path.isdir(path):
        found = sorted(os.path.join(path, n) for n in os.listdir(path)
                       if n.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {path}')
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    return [path]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def run_segmentation(args, images):
    """The core's tasks: ``panoptic``, ``semantic`` or ``instance`` overlays + JSON."""
    things, stuff = args.things.split(','), args.stuff.split(',')
    if not any(s.strip() for s in things + stuff):
        raise ValueError('the vocabulary is empty: pass --things and/or --stuff, e.g. '
                         '--things "dog,cat"')
    segmenter = Segmenter(args.config, args.checkpoint, args.device)
    names = [n.strip() for n in things if n.strip()] + [n.strip() for n in stuff if n.strip()]
    os.makedirs(args.out_dir, exist_ok=True)
    for image in images:
        result = segmenter(image, things, stuff, score_thr=args.score_thr)
        needed = dict(panoptic='panoptic', semantic='semantic', instance='instances')[args.task]
        if needed not in result:
            raise ValueError(f'the model of {args.config} gives no {args.task} output; enable '
                             f'it in model.postprocessor ({args.task}_on=True)')
        ids, segments = drawable_segments(result, args.task, names)
        overlay = draw_overlay(mmcv.imread(image, channel_order='rgb'), ids, segments)
        png, js = (os.path.join(args.out_dir, f'{_stem(image)}.{ext}') for ext in ('png', 'json'))
        _write_atomically(png, lambda p: overlay.save(p, format='PNG'))
        _write_atomically(js, lambda p: json.dump(
            dict(image=image, task=args.task, segments=segments), open(p, 'w'), indent=1))
        print(f'{len(segments)} {args.task} segments -> {png}, {js}')


def run_plugin_task(args, images):
    manager = load_plugins()
    tasks = manager.inference_tasks()
    if args.task not in tasks:
        raise ValueError(f'unknown task {args.task!r}; installed plugins offer: '
                         f'{", ".join(sorted(tasks))}')
    model = Segmenter(args.config, args.checkpoint, args.device).model
    batch = preprocess_images(model, images)
    options = dict(text=args.text, beam_size=args.beam_size, topk=args.topk)
    with torch.no_grad():
        out = manager.hook.openseg_run_task(task=args.task, model=model,
                                            inputs=batch['inputs'],
                                            data_samples=batch['data_samples'],
                                            options=options)
    if out is None:
        raise ValueError(f'the model of {args.config} ({type(model).__name__}) does not run '
                         f'task {args.task!r}')
    os.makedirs(args.out_dir, exist_ok=True)
    masks = out.get('masks') or [None] * len(images)
    for image, mask in zip(images, masks):
        if mask is None:
            continue
        overlay = draw_overlay(mmcv.imread(image, channel_order='rgb'), mask.astype(np.int32),
                               [dict(id=1, label=args.text or args.task)])
        png = os.path.join(args.out_dir, f'{_stem(image)}_{args.task}.png')
        _write_atomically(png, lambda p: overlay.save(p, format='PNG'))
    js = os.path.join(args.out_dir, f'{args.task}.json')
    report = dict(task=args.task, text=args.text,
                  images=[dict(image=i, **r) for i, r in zip(images, out['results'])])
    _write_atomically(js, lambda p: json.dump(report, open(p, 'w'), indent=1))
    for entry in report['images']:
        print(json.dumps(entry))
    print(f'-> {js}')


def main():
    args = parse_args()
    images = _images(args.image)
    if args.task in ('panoptic', 'semantic', 'instance'):
        run_segmentation(args, images)
    else:
        run_plugin_task(args, images)


if __name__ == '__main__':
    run_tool(main, 'demo.py')

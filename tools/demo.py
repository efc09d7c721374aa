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

import numpy as np
import torch
from PIL import Image

from openseg_core.engine.cli import UserError, cleanup_on_error, run_tool
from openseg_core.inference import (MAX_IMAGE_PIXELS, Segmenter, check_image, draw_overlay,
                                    drawable_segments, preprocess_images, read_image)
from openseg_core.models.base import Vocabulary
from openseg_core.plugins import load_plugins

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__,
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
    parser.add_argument('--partial-load', action='store_true',
                        help='load the weights of a checkpoint that fit the model and skip the '
                        'rest (default: a checkpoint that does not fit is an error)')
    parser.add_argument('--max-pixels', type=float, default=MAX_IMAGE_PIXELS,
                        help='refuse larger images (default %(default).0f; 0: no limit)')
    args = parser.parse_args(argv)
    if args.score_thr < 0 or args.score_thr > 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    if args.topk < 1:
        parser.error(f'--topk must be at least 1, got {args.topk}')
    return args


def _write_atomically(path: str, write) -> None:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
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
    things = [n.strip() for n in things if n.strip()]
    stuff = [n.strip() for n in stuff if n.strip()]
    names = list(Vocabulary(things, stuff).names)  # checked before the model loads
    segmenter = _segmenter(args)
    for image in images:
        array = read_image(image, args.max_pixels or None)
        result = segmenter(array, things, stuff, score_thr=args.score_thr)
        needed = dict(panoptic='panoptic', semantic='semantic', instance='instances')[args.task]
        if needed not in result:
            raise ValueError(f'the model of {args.config} gives no {args.task} output; enable '
                             f'it in model.postprocessor ({args.task}_on=True)')
        ids, segments = drawable_segments(result, args.task, names)
        overlay = draw_overlay(array[..., ::-1], ids, segments)
        png, js = (os.path.join(args.out_dir, f'{_stem(image)}.{ext}') for ext in ('png', 'json'))
        _write_atomically(png, lambda p: _save_png(overlay, p))
        _write_atomically(js, lambda p: _save_json(
            dict(image=image, task=args.task, segments=segments), p))
        print(f'{len(segments)} {args.task} segments -> {png}, {js}')


def run_plugin_task(args, images):
    manager = load_plugins()
    tasks = manager.inference_tasks()
    if args.task not in tasks:
        raise ValueError(f'unknown task {args.task!r}; installed plugins offer: '
                         f'{", ".join(sorted(tasks))}')
    segmenter = _segmenter(args)
    model = segmenter.model
    arrays = [read_image(image, args.max_pixels or None) for image in images]
    batch = preprocess_images(model, arrays, segmenter.pipeline)
    options = dict(text=args.text, beam_size=args.beam_size, topk=args.topk,
                   images=[np.ascontiguousarray(a[..., ::-1]) for a in arrays])
    with torch.no_grad():
        out = manager.hook.openseg_run_task(task=args.task, model=model,
                                            inputs=batch['inputs'],
                                            data_samples=batch['data_samples'],
                                            options=options)
    if out is None:
        raise ValueError(f'the model of {args.config} ({type(model).__name__}) does not run '
                         f'task {args.task!r}')
    masks = out.get('masks') or [None] * len(images)
    drawn = out.get('images') or [None] * len(images)
    for image, array, mask, picture in zip(images, arrays, masks, drawn):
        png = os.path.join(args.out_dir, f'{_stem(image)}_{args.task}.png')
        if picture is not None:  # the plugin drew its result itself (RGB)
            overlay = Image.fromarray(np.asarray(picture, dtype=np.uint8))
        elif mask is not None:
            overlay = draw_overlay(array[..., ::-1], mask.astype(np.int32),
                                   [dict(id=1, label=args.text or args.task)])
        else:
            continue
        _write_atomically(png, lambda p: _save_png(overlay, p))
    js = os.path.join(args.out_dir, f'{args.task}.json')
    report = dict(task=args.task, text=args.text,
                  images=[dict(image=i, **r) for i, r in zip(images, out['results'])])
    _write_atomically(js, lambda p: _save_json(report, p))
    for entry in report['images']:
        print(json.dumps(entry))
    print(f'-> {js}')


def _segmenter(args) -> Segmenter:
    return Segmenter(args.config, args.checkpoint, args.device, strict=not args.partial_load,
                     max_pixels=args.max_pixels or None)


def _save_png(image, path: str) -> None:
    # Fast compression: a 12-megapixel overlay takes seconds at PIL's default level.
    image.save(path, format='PNG', compress_level=1)


def _save_json(data, path: str) -> None:
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=1)


def main(argv=None):
    args = parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'--device {args.device} needs a CUDA GPU and torch sees none; use '
                        '--device cpu')
    images = _images(args.image)
    # Every input is checked before the model loads: a bad file fails in a second.
    for image in images:
        check_image(image, args.max_pixels or None)
    # A failed run leaves the output directory as it found it (absent if it was).
    with cleanup_on_error(args.out_dir):
        if args.task in ('panoptic', 'semantic', 'instance'):
            run_segmentation(args, images)
        else:
            run_plugin_task(args, images)


if __name__ == '__main__':
    run_tool(main, 'demo.py')

"""The generated ``shapes`` world: every annotation type openseg reads, in the real formats.

Each image has two stuff regions (an upper and a lower one, split by a wavy horizon) and one to
four coloured shapes that may occlude each other. Everything derives from ``(seed, split,
index)``, so two runs write byte-identical files. Written per split::

    images/<split>/<id>.png                       RGB images
    annotations/panoptic_<split>.json + panoptic_<split>/<id>.png    COCO panoptic
    annotations/instances_<split>.json            COCO instances (RLE masks, boxes)
    annotations/semantic_<split>/<id>.png         ADE20K-style labels (0 = unlabelled, c+1)
    annotations/refs_<split>.json                 RefCOCO-style referring expressions
    annotations/captions_<split>.json             COCO-captions
    annotations/narratives_<split>.jsonl          Localized-Narratives, one point per word

``train`` and ``val`` never contain :data:`HELD_OUT_CLASSES`; ``val_open`` contains every class,
for open-vocabulary evaluation.

A split named in :data:`CAPTION_SPLITS` (``pretrain``) is image-caption pairs only, for
pretraining a small CLIP: ``images/<split>/`` + ``annotations/captions_<split>.json``, several
captions per image that name every class, held-out ones included (web captions name everything),
and no masks, boxes or other annotations.
"""
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageDraw

THING_CLASSES = ('circle', 'square', 'triangle', 'cross', 'diamond', 'star')
STUFF_CLASSES = ('sky', 'grass', 'sand', 'water')
HELD_OUT_CLASSES = ('diamond', 'star')

COLOURS = {'red': (220, 40, 40), 'green': (40, 170, 60), 'blue': (40, 70, 220),
           'yellow': (235, 210, 40), 'purple': (140, 50, 170), 'white': (245, 245, 245)}
STUFF_LOOK = {'sky': ((150, 195, 240), 6), 'grass': ((90, 140, 60), 28),
              'sand': ((215, 190, 140), 18), 'water': ((40, 100, 150), 14)}
SIZES = {'small': (0.07, 0.10), 'medium': (0.11, 0.15), 'large': (0.16, 0.21)}
MIN_VISIBLE_FRACTION = 0.35
#: Splits written as image-caption pairs only (see :func:`_write_caption_split`).
CAPTION_SPLITS = ('pretrain',)
#: Kinds of image in a caption split: whole scenes, crops centred on one shape, stuff patches.
CAPTION_IMAGE_SHARES = dict(scene=0.25, object=0.7, stuff=0.05)


def shapes_categories() -> List[dict]:
    """COCO-panoptic categories; ids are 1-based, things first."""
    cats = []
    for name in THING_CLASSES + STUFF_CLASSES:
        isthing = name in THING_CLASSES
        cats.append(dict(id=len(cats) + 1, name=name, isthing=int(isthing),
                         supercategory='shape' if isthing else 'background',
                         held_out=int(name in HELD_OUT_CLASSES),
                         color=list(COLOURS[list(COLOURS)[len(cats) % len(COLOURS)]])
                         if isthing else list(STUFF_LOOK[name][0])))
    return cats


@dataclass
class ShapesSpec:
    """How many images of which size each split gets."""
    image_size: int = 128
    splits: Dict[str, int] = field(default_factory=lambda: dict(train=800, val=100,
                                                                val_open=100))
    seed: int = 0
    max_things: int = 4


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> List[tuple]:
    def ring(n, radii, phase):
        return [(cx + radii[i % len(radii)] * math.cos(phase + 2 * math.pi * i / n),
                 cy + radii[i % len(radii)] * math.sin(phase + 2 * math.pi * i / n))
                for i in range(n)]
    if kind == 'square':
        return ring(4, [r], angle + math.pi / 4)
    if kind == 'diamond':
        return ring(4, [r * 1.15, r * 0.7], -math.pi / 2)
    if kind == 'triangle':
        return ring(3, [r * 1.1], angle - math.pi / 2)
    if kind == 'star':
        return ring(10, [r * 1.1, r * 0.45], angle - math.pi / 2)
    if kind == 'cross':
        a, b = r, r * 0.38
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
               (-a, b), (-a, -b), (-b, -b)]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(kind)


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float):
    canvas = Image.new('L', (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == 'circle':
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=1)
    return np.asarray(canvas, dtype=bool)


def _position_word(cx: float, cy: float, size: int) -> str:
    dx, dy = cx / size - 0.5, cy / size - 0.5
    if abs(dx) >= abs(dy):
        return 'on the left' if dx < 0 else 'on the right'
    return 'at the top' if dy < 0 else 'at the bottom'


def _describe(target: dict, others: List[dict]) -> str:
    """The shortest unambiguous description of ``target`` among ``others``."""
    attrs = [('colour',), ('size', 'colour'), ('colour', 'position'),
             ('size', 'colour', 'position')]
    for keys in attrs:
        clash = [o for o in others
                 if o['name'] == target['name'] and all(o[k] == target[k] for k in keys)]
        if not clash:
            break
    words = [target['size']] if 'size' in keys else []
    words += [target['colour'], target['name']]
    if 'position' in keys:
        words.append(target['position'])
    return 'the ' + ' '.join(words)


def _render_image(rng: np.random.Generator, spec: ShapesSpec, classes: List[str]):
    size = spec.image_size
    ys, xs = np.mgrid[0:size, 0:size]
    upper, lower = rng.choice(STUFF_CLASSES, size=2, replace=False)
    horizon = size * rng.uniform(0.3, 0.7) + size * 0.05 * np.sin(
        xs * rng.uniform(0.03, 0.1) + rng.uniform(0, 6.3))
    stuff_of = {upper: ys < horizon, lower: ys >= horizon}
    image = np.zeros((size, size, 3), np.float32)
    for name, region in stuff_of.items():
        colour, noise = STUFF_LOOK[name]
        texture = rng.normal(0, noise, (size, size, 1))
        image[region] = (np.asarray(colour) + texture)[region]

    things = []
    for _ in range(rng.integers(1, spec.max_things + 1)):
        name = str(rng.choice(classes))
        colour = str(rng.choice(list(COLOURS)))
        size_word = str(rng.choice(list(SIZES)))
        r = size * rng.uniform(*SIZES[size_word])
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = _shape_mask(name, size, cx, cy, r, rng.uniform(0, math.pi / 2))
        shade = np.asarray(COLOURS[colour]) + rng.normal(0, 6, 3)
        image[mask] = shade
        for earlier in things:
            earlier['mask'] &= ~mask
        things.append(dict(name=name, colour=colour, size=size_word, mask=mask,
                           full_area=int(mask.sum())))
    things = [t for t in things
              if t['mask'].sum() >= MIN_VISIBLE_FRACTION * max(t['full_area'], 1)]
    for t in things:
        ty, tx = np.nonzero(t['mask'])
        t['centre'] = (float(tx.mean()), float(ty.mean()))
        t['position'] = _position_word(*t['centre'], size)
    occupied = np.zeros((size, size), bool)
    for t in things:
        occupied |= t['mask']
    stuff = [dict(name=n, mask=m & ~occupied) for n, m in stuff_of.items()]
    stuff = [s for s in stuff if s['mask'].any()]
    # Pixels of dropped (mostly hidden) shapes keep their paint but belong to no segment.
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, things, stuff, (str(upper), str(lower))


def _caption(things, upper, lower, variant: int) -> str:
    parts = [f"a {t['size']} {t['colour']} {t['name']}" for t in things]
    listed = parts[0] if len(parts) == 1 else ', '.join(parts[:-1]) + ' and ' + parts[-1]
    if variant == 0:
        return f'{listed} in front of {lower} below {upper}'
    return f'{upper} above {lower} with {listed}'


def _narrative(things, stuff, caption: str, size: int):
    """Localized-Narratives record: one utterance and one trace point per word.

    The words of an object's phrase ("a large red square") point at that object, in the
    caption's order (two squares: each "square" at its own), a stuff word at its region.
    """
    words = caption.replace(',', '').split()
    anchors = [None] * len(words)
    cursor = 0
    for t in things:  # the caption lists "a {size} {colour} {name}" in this order
        at = words.index(t['name'], cursor)
        for k in (at - 2, at - 1, at):
            anchors[k] = t['centre']
        cursor = at + 1
    regions = {}
    for s in stuff:
        ys, xs = np.nonzero(s['mask'])
        regions[s['name']] = (float(xs.mean()), float(ys.mean()))
    anchors = [a if a is not None else regions.get(w) for a, w in zip(anchors, words)]
    # Function words point where the next content word will: a pointer moves ahead of speech.
    points, upcoming = [], (size / 2, size / 2)
    for anchor in reversed(anchors):
        upcoming = anchor if anchor is not None else upcoming
        points.append(upcoming)
    points.reverse()
    timed, trace = [], []
    for i, (w, (x, y)) in enumerate(zip(words, points)):
        timed.append(dict(utterance=w, start_time=round(0.4 * i, 2),
                          end_time=round(0.4 * i + 0.35, 2)))
        trace.append(dict(x=round(x / size, 4), y=round(y / size, 4), t=round(0.4 * i + 0.2, 2)))
    return timed, [trace]


def _bbox(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _id_to_rgb(seg: np.ndarray) -> np.ndarray:
    return np.stack([seg % 256, seg // 256 % 256, seg // 65536], axis=-1).astype(np.uint8)


def _write_split(root: str, split: str, count: int, spec: ShapesSpec,
                 progress: Optional[Callable[[str, int, int], None]]):
    if split in CAPTION_SPLITS:
        return _write_caption_split(root, split, count, spec, progress)
    cats = shapes_categories()
    cat_id = {c['name']: c['id'] for c in cats}
    classes = [c for c in THING_CLASSES if split == 'val_open' or c not in HELD_OUT_CLASSES]
    split_seed = {'train': 0, 'val': 1, 'val_open': 2}.get(split, sum(map(ord, split)))
    for sub in (f'images/{split}', f'annotations/panoptic_{split}',
                f'annotations/semantic_{split}'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)

    images, pan_anns, inst_anns, refs, captions, narratives = [], [], [], [], [], []
    ann_id = 1
    for index in range(count):
        rng = np.random.default_rng([spec.seed, split_seed, index])
        image, things, stuff, (upper, lower) = _render_image(rng, spec, classes)
        image_id = index + 1
        file_stem = f'{image_id:06d}'
        Image.fromarray(image).save(os.path.join(root, 'images', split, file_stem + '.png'))
        images.append(dict(id=image_id, file_name=file_stem + '.png', width=spec.image_size,
                           height=spec.image_size))

        pan = np.zeros((spec.image_size, spec.image_size), np.int64)
        sem = np.zeros((spec.image_size, spec.image_size), np.uint8)
        segments = []
        for seg in stuff + things:
            seg_id = len(segments) + 1
            pan[seg['mask']] = seg_id
            sem[seg['mask']] = cat_id[seg['name']]
            segments.append(dict(id=seg_id, category_id=cat_id[seg['name']], iscrowd=0,
                                 bbox=_bbox(seg['mask']), area=int(seg['mask'].sum())))
        Image.fromarray(_id_to_rgb(pan)).save(
            os.path.join(root, 'annotations', f'panoptic_{split}', file_stem + '.png'))
        Image.fromarray(sem).save(
            os.path.join(root, 'annotations', f'semantic_{split}', file_stem + '.png'))
        pan_anns.append(dict(image_id=image_id, file_name=file_stem + '.png',
                             segments_info=segments))

        for t in things:
            rle = mask_utils.encode(np.asfortranarray(t['mask'].astype(np.uint8)))
            rle['counts'] = rle['counts'].decode('ascii')
            inst_anns.append(dict(id=ann_id, image_id=image_id, category_id=cat_id[t['name']],
                                  segmentation=rle, area=int(t['mask'].sum()),
                                  bbox=_bbox(t['mask']), iscrowd=0))
            others = [o for o in things if o is not t]
            sentence = _describe(t, others)
            alt = f"{t['colour']} {t['name']} {t['position']}"
            refs.append(dict(ref_id=len(refs) + 1, ann_id=ann_id, image_id=image_id,
                             category_id=cat_id[t['name']], split=split,
                             file_name=file_stem + '.png',
                             sentences=[dict(sent_id=2 * len(refs) + k, sent=s, raw=s,
                                             tokens=s.split())
                                        for k, s in enumerate((sentence, alt))]))
            ann_id += 1

        for variant in range(2):
            text = _caption(things, upper, lower, variant)
            captions.append(dict(id=len(captions) + 1, image_id=image_id, caption=text))
        timed, traces = _narrative(things, stuff, captions[-2]['caption'], spec.image_size)
        narratives.append(dict(dataset_id='shapes', image_id=file_stem, annotator_id=0,
                               caption=captions[-2]['caption'], timed_caption=timed,
                               traces=traces))
        if progress is not None:
            progress(split, index + 1, count)

    ann_dir = os.path.join(root, 'annotations')
    thing_cats = [c for c in cats if c['isthing']]
    info = dict(description='openseg shapes', seed=spec.seed, split=split,
                held_out=list(HELD_OUT_CLASSES))
    dumps = {
        f'panoptic_{split}.json': dict(info=info, images=images, annotations=pan_anns,
                                       categories=cats),
        f'instances_{split}.json': dict(info=info, images=images, annotations=inst_anns,
                                        categories=thing_cats),
        f'captions_{split}.json': dict(info=info, images=images, annotations=captions),
        f'refs_{split}.json': refs,
    }
    for name, payload in dumps.items():
        with open(os.path.join(ann_dir, name), 'w') as f:
            json.dump(payload, f)
    with open(os.path.join(ann_dir, f'narratives_{split}.jsonl'), 'w') as f:
        for record in narratives:
            f.write(json.dumps(record) + '\n')


def _a(word: str) -> str:
    return ('an ' if word[0] in 'aeiou' else 'a ') + word


def _square_box(box, scale: float, shift, size: int):
    """A square of side ``scale * max(w, h)`` centred on ``box`` (x, y, w, h) moved by
    ``shift`` (fractions of the side), kept inside the image -> int ``(x0, y0, x1, y1)``."""
    x, y, w, h = box
    side = int(round(min(size, max(8.0, scale * max(w, h)))))
    cx, cy = x + w / 2 + shift[0] * side, y + h / 2 + shift[1] * side
    x0 = int(round(min(max(cx - side / 2, 0), size - side)))
    y0 = int(round(min(max(cy - side / 2, 0), size - side)))
    return x0, y0, x0 + side, y0 + side


def _object_captions(rng, t: dict, ground: List[str]) -> List[str]:
    """Captions of an image centred on the shape ``t`` (other shapes may show at its edges;
    like a web photo of an object, the caption names the main one). Five of eight name the
    shape alone: colour and stuff are learned first and would otherwise explain most captions."""
    name, colour = t['name'], t['colour']
    on = ' and '.join(ground)
    return [f'a photo of {_a(name)}.', f'{_a(name)}.', f'a picture of {_a(name)}.',
            f'{_a(name)} in the picture.',
            str(rng.choice([name, f'the {name}', f'{_a(name)} shape'])),
            f'a photo of {_a(colour)} {name}.', f'{_a(colour)} {name} on {on}.',
            f"a close-up of {_a(t['size'])} {colour} {name}."]


def _scene_captions(rng, things: List[dict], upper: str, lower: str) -> List[str]:
    """Captions of a whole scene: the two full descriptions of the segmentation splits, a list
    of names, one shape with its position, and one shape alone (a caption that mentions one
    object of many, as web captions do)."""
    caps = [_caption(things, upper, lower, 0), _caption(things, upper, lower, 1)]
    names = [_a(t['name']) for t in things]
    listed = names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' and ' + names[-1]
    caps.append(f'a photo of {listed}.')
    t = things[int(rng.integers(len(things)))]
    caps.append(f"{_a(t['colour'])} {t['name']} {t['position']}, {upper} above {lower}.")
    t = things[int(rng.integers(len(things)))]
    caps.append(f"a photo of {_a(t['name'])}.")
    return caps


def _write_caption_split(root: str, split: str, count: int, spec: ShapesSpec,
                         progress: Optional[Callable[[str, int, int], None]]):
    """Image-caption pairs over every class (held-out ones included), nothing else.

    Three kinds of image, drawn per index (:data:`CAPTION_IMAGE_SHARES`): whole scenes, crops
    centred on one shape and crops of one stuff region, all at ``spec.image_size``. Contrastive
    learning on whole scenes alone gives an image embedding of the scene, which names a
    single shape's crop poorly; object-centred pictures are a large share of CLIP's web data
    too, and they are what zero-shot classification of a crop asks about.
    """
    size = spec.image_size
    os.makedirs(os.path.join(root, 'images', split), exist_ok=True)
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    split_seed = 3 + CAPTION_SPLITS.index(split)
    images, captions = [], []
    for index in range(count):
        rng = np.random.default_rng([spec.seed, split_seed, index])
        image, things, stuff, (upper, lower) = _render_image(rng, spec, list(THING_CLASSES))
        kind = rng.uniform()
        if not things:  # every shape hidden: the scene has only stuff to show
            kind = 1.0
        if kind < CAPTION_IMAGE_SHARES['scene']:
            texts = _scene_captions(rng, things, upper, lower)
        elif kind < CAPTION_IMAGE_SHARES['scene'] + CAPTION_IMAGE_SHARES['object']:
            t = things[int(rng.integers(len(things)))]
            box = _square_box(_bbox(t['mask']), rng.uniform(1.1, 1.6),
                              rng.uniform(-0.1, 0.1, 2), size)
            ground = [s['name'] for s in stuff
                      if s['mask'][box[1]:box[3], box[0]:box[2]].mean() > 0.05]
            texts = _object_captions(rng, t, ground or [upper])
            image = np.asarray(Image.fromarray(image).crop(box).resize((size, size),
                                                                        Image.BILINEAR))
        else:
            s = stuff[int(rng.integers(len(stuff)))]
            ys, xs = np.nonzero(s['mask'])
            k = int(rng.integers(len(xs)))
            side = int(size * rng.uniform(0.2, 0.35))
            box = _square_box((xs[k] - side / 2, ys[k] - side / 2, side, side), 1.0, (0, 0),
                              size)
            texts = [f"a photo of {s['name']}.", f"{s['name']}.", f"a patch of {s['name']}.",
                     f"a photo of {_a(s['name'])}."]
            image = np.asarray(Image.fromarray(image).crop(box).resize((size, size),
                                                                        Image.BILINEAR))
        image_id = index + 1
        file_name = f'{image_id:06d}.png'
        # Fast PNG compression: a caption split is large and every CLIP build writes it anew.
        Image.fromarray(image).save(os.path.join(root, 'images', split, file_name),
                                    compress_level=1)
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for text in texts:
            captions.append(dict(id=len(captions) + 1, image_id=image_id, caption=text))
        if progress is not None:
            progress(split, index + 1, count)
    info = dict(description='openseg shapes image-caption pairs', seed=spec.seed,
                split=split, held_out=list(HELD_OUT_CLASSES))
    with open(os.path.join(root, 'annotations', f'captions_{split}.json'), 'w') as f:
        json.dump(dict(info=info, images=images, annotations=captions), f)


def generate_shapes(out_dir: str, spec: Optional[ShapesSpec] = None,
                    progress: Optional[Callable[[str, int, int], None]] = None) -> str:
    """Write the dataset to ``out_dir`` atomically (a temporary sibling, then a rename).

    Returns ``out_dir``. An existing ``out_dir`` is replaced only once the new one is complete.
    """
    spec = spec or ShapesSpec()
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.shapes-', dir=parent)
    try:
        for split, count in spec.splits.items():
            _write_split(tmp, split, count, spec, progress)
        with open(os.path.join(tmp, 'shapes.json'), 'w') as f:
            json.dump(dict(image_size=spec.image_size, splits=spec.splits, seed=spec.seed,
                           things=THING_CLASSES, stuff=STUFF_CLASSES,
                           held_out=HELD_OUT_CLASSES), f)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir

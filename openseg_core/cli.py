"""The ``openseg`` command: ``openseg plugins``, ``openseg shapes DIR`` and
``openseg pretrain-clip``."""
import argparse
import sys

from openseg_core.engine.cli import run_tool


def _plugins(args) -> None:
    from openseg_core.plugins import ALLOW_ENV, DISABLE_ENV, get_plugin_manager
    manager = get_plugin_manager()
    for record in manager.records.values():
        state = 'enabled' if record.enabled else f'disabled ({record.reason})'
        dist = f' [{record.distribution}]' if record.distribution else ''
        print(f'{record.name} {record.version}{dist}: {state}')
        if record.description:
            print(f'  {record.description}')
        if record.requires:
            print(f"  requires: {', '.join(record.requires)}")
        for kind, names in sorted(record.registered.items()):
            print(f"  {kind.lower()}: {', '.join(names)}")
    suites = sorted(manager.benchmarks())
    if suites:
        print(f"benchmarks (tools/benchmark.py CONFIG --suite NAME): {', '.join(suites)}")
    print(f'(allow-list with {ALLOW_ENV}=a,b; disable with {DISABLE_ENV}=a,b)')


def _shapes(args) -> None:
    from openseg_core.datasets.shapes import ShapesSpec, generate_shapes
    spec = ShapesSpec(image_size=args.size, seed=args.seed,
                      splits=dict(train=args.train, val=args.val, val_open=args.val_open))
    if args.pretrain:
        spec.splits['pretrain'] = args.pretrain
    if min(spec.splits.values()) < 0 or args.size < 32:
        raise ValueError('split sizes must be >= 0 and --size >= 32')

    def progress(split, done, total):
        if done == total or done % 100 == 0:
            print(f'  {split}: {done}/{total} images', file=sys.stderr)

    out = generate_shapes(args.out, spec, progress=progress)
    print(f'wrote shapes dataset to {out}')


def _pretrain_clip(args) -> None:
    from openseg_core.models.clip.pretrained import build_shapes_clip, shapes_clip_file
    import os
    path = shapes_clip_file()
    # The explicit command builds whatever OPENSEG_BUILD_PRETRAINED says (that variable only
    # forbids builds on demand, inside other commands).
    print(path if os.path.isfile(path) and not args.force
          else build_shapes_clip(path, force=args.force))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='openseg')
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('plugins', help='list plugins, their versions and what they register')
    shapes = sub.add_parser('shapes', help='generate the shapes dataset')
    shapes.add_argument('out', help='output directory (replaced atomically)')
    shapes.add_argument('--train', type=int, default=800)
    shapes.add_argument('--val', type=int, default=100)
    shapes.add_argument('--val-open', type=int, default=100)
    shapes.add_argument('--pretrain', type=int, default=0,
                        help='images of the image-caption split "pretrain" (CLIP pretraining; '
                        'every class named, no masks); 0 = none')
    shapes.add_argument('--size', type=int, default=128, help='image side in pixels')
    shapes.add_argument('--seed', type=int, default=0)
    clip = sub.add_parser('pretrain-clip', help='build the small CLIP trained on shapes into the '
                          'openseg cache (once; about 5 minutes) and print its path')
    clip.add_argument('--force', action='store_true', help='rebuild even if it is cached')
    args = parser.parse_args(argv)
    commands = {'plugins': _plugins, 'shapes': _shapes, 'pretrain-clip': _pretrain_clip}
    run_tool(lambda: commands[args.command](args), 'openseg')


if __name__ == '__main__':
    main()

"""Inference (and training) speed of a config, optionally against mmdet's Mask2Former.

    python tools/benchmark.py CONFIG [--size 512] [--iters 10] [--compare-mmdet] [--train]
    python tools/benchmark.py CONFIG --suite NAME [the suite's options]   # a plugin's benchmark

Reports the median latency per image, images/s and peak memory (the model's weights plus the
working memory of one step: the CUDA allocator's peak on a GPU, the resident set on a CPU); with
``--compare-mmdet`` builds mmdet's own Mask2Former of the same size (backbone, pixel decoder,
queries, decoder layers, widths, points, class count, input size) in the same process, times
the two models in turns and prints the ratios openseg / mmdet. Weights are random: speed does
not depend on them. Both models run under glibc's default policy for freed CPU memory, as
mmdet's tools run them, which page-faults each large tensor in afresh; ``--keep-freed-memory``
runs both as openseg's tools do (``env_cfg.keep_freed_memory``), freed memory kept for reuse.

The roofline line gives each model's FLOPs per step (torch's flop counter: convolutions and
matrix products) and the machine's rate on a 2048 x 2048 fp32 matrix product, timed in turns with
the models (on a CPU through both MKL and oneDNN, the faster counting): ``floor = FLOPs / GEMM
rate`` is the time the step would take at that rate, and the share of the floor is
``floor / measured``.
"""
import argparse
import logging
import os
import statistics
import time
from typing import Callable, Dict

import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData, PixelData

from openseg_core.engine.cli import load_config, run_tool
from openseg_core.models.layers import convert_fast_layers, flop_formulas, onednn_linear
from openseg_core.plugins import get_plugin_manager
from openseg_core.registry import MODELS
from openseg_core.utils.memory import (keep_freed_memory, peak_step_memory_mb,
                                       return_large_frees)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--size', type=int, default=512, help='square input side')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--vocab-size', type=int, default=None,
                        help='classify into this many synthetic class names')
    parser.add_argument('--vocab-sweep', type=int, nargs='+', default=None, metavar='N',
                        help='also time inference with each of these vocabulary sizes '
                             '(text embeddings cached after the first call)')
    parser.add_argument('--train', action='store_true', help='also time training steps')
    parser.add_argument('--batch-size', type=int, default=2, help='training batch size')
    parser.add_argument('--compare-mmdet', action='store_true')
    parser.add_argument('--mmdet-fast-layers', action='store_true',
                        help="with --compare-mmdet: give mmdet's model openseg's fast layers in "
                             'the parts openseg lends it (a pixel decoder mmdet lacks), so that '
                             'the two differ in the decoder, head and post-processing only; by '
                             'default it runs them as built, as it runs its own parts')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help="keep freed CPU memory for reuse, as openseg's tools do "
                             "(env_cfg.keep_freed_memory), for both models; by default glibc's "
                             'policy, as mmdet\'s tools run, hands large freed blocks back to '
                             'the system and page-faults each large tensor in afresh')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.text_encoder.templates=[{}.]')
    parser.add_argument('--suite', default=None,
                        help="run a plugin's benchmark instead (`openseg plugins` lists them); "
                             'options this tool does not know go to the suite')
    args, rest = parser.parse_known_args(argv)
    if rest and args.suite is None:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.mmdet_fast_layers and not args.compare_mmdet:
        parser.error('--mmdet-fast-layers changes the mmdet model of --compare-mmdet: '
                     'add --compare-mmdet')
    return args, rest


def _batch(size: int, n: int, with_targets: bool, num_classes: int):
    inputs, samples = [], []
    gen = torch.Generator().manual_seed(0)
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen))
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1.0, 1.0)))
        if with_targets:
            masks = torch.zeros(3, size, size, dtype=torch.uint8)
            for k in range(3):
                masks[k, k * size // 4:(k + 2) * size // 4, k * size // 5:(k + 3) * size // 5] = 1
            sample.gt_instances = InstanceData(
                labels=torch.tensor([0, 1, 0]) % max(num_classes, 1),
                bboxes=torch.tensor([[0., 0., 1., 1.]]).repeat(3, 1),
                masks=BitmapMasks(masks.numpy(), size, size))
            sample.gt_sem_seg = PixelData(sem_seg=torch.full((1, size, size), 255))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _interleaved_medians(steps: Dict[str, Callable], iters: int, warmup: int,
                         device: str) -> Dict[str, float]:
    """Median seconds per step, the models taking turns so that the machine's drift (other
    jobs, clocks, caches) lands on all of them alike; the order reverses every round, so that
    no step always follows the same one (a step after another's large frees pays for them
    again: page faults, as the allocator returns memory to the system)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for round_index in range(iters):
        order = list(steps.items())
        for name, step in (order if round_index % 2 == 0 else order[::-1]):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


GEMM_SIZE = 2048


def gemm_steps(device: str) -> Dict[str, Callable]:
    """A ``GEMM_SIZE`` square fp32 matrix product, timed in turns with the models: the
    machine's reachable rate under the same conditions (threads, clocks, other jobs). On a CPU
    it is timed twice, through ``torch.mm`` (MKL) and through oneDNN (:func:`onednn_linear`),
    since MKL runs its AVX2 code on AMD processors; the floor takes the faster."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(GEMM_SIZE, GEMM_SIZE, generator=gen).to(device) for _ in range(2))
    steps = {'torch.mm': lambda: torch.mm(a, b)}
    if not device.startswith('cuda'):
        steps['oneDNN'] = lambda: onednn_linear(a, b)
    return steps


def device_description(device: str) -> str:
    """The device and what its figures depend on: the GPU's name, or the CPU kernels' vector
    width (openseg picks some routes by it, and ratios differ between AVX2 and AVX-512
    machines: docs/reference_model.md) and the threads."""
    if device.startswith('cuda'):
        return f'{device} ({torch.cuda.get_device_name(torch.device(device))})'
    return (f'{device} ({torch.backends.cpu.get_cpu_capability()} kernels, '
            f'{torch.get_num_threads()} threads)')


def count_flops(step: Callable, model, training: bool) -> int:
    """FLOPs of one call of ``step`` (torch's flop counter: convolutions, matrix products,
    attention; sampling and element-wise work count nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    # Without gradients, the counter's module tracker trips on views of parameters that
    # require grad; the count does not depend on it.
    trainable = [] if training else [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=flop_formulas()) as counter:
            step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return counter.get_total_flops()


def init_quietly(model):
    """``init_weights()`` without mmengine's per-parameter log, one line per tensor."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


class ModelSteps:
    """One model's inference step (batch 1) and training step (``batch_size``, AdamW)."""

    def __init__(self, model, args, num_classes: int):
        self.model = model.to(args.device)
        self.weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        self.test_batch = _batch(args.size, 1, False, num_classes)
        self.train_batch = _batch(args.size, args.batch_size, True, num_classes)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-5)

    @torch.no_grad()
    def infer(self):
        self.model.eval()
        data = self.model.data_preprocessor(self.test_batch, False)
        self.model(**data, mode='predict')

    def train_step(self):
        self.model.train()
        data = self.model.data_preprocessor(self.train_batch, True)
        losses = self.model(**data, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()


def measure(models: Dict[str, ModelSteps], args) -> Dict[str, dict]:
    results = {name: dict(weights_mb=m.weights_mb) for name, m in models.items()}
    gemms = {f'gemm {n}': step for n, step in gemm_steps(args.device).items()}
    latency = _interleaved_medians(dict({n: m.infer for n, m in models.items()}, **gemms),
                                   args.iters, args.warmup, args.device)
    gemm_rates = {n: [2 * GEMM_SIZE ** 3 / latency[n]] for n in gemms}
    for name in models:
        results[name].update(latency_ms=1000 * latency[name], images_per_s=1 / latency[name])
    if args.train:
        step_time = _interleaved_medians(
            dict({n: m.train_step for n, m in models.items()}, **gemms),
            max(args.iters // 2, 1), 1, args.device)
        for n in gemms:
            gemm_rates[n].append(2 * GEMM_SIZE ** 3 / step_time[n])
        for name in models:
            results[name]['train_iter_per_s'] = 1 / step_time[name]
        # Training empties what inference keeps between calls (a trained text tower's
        # vocabulary embeddings): one untimed inference refills it, so that the counts and
        # peaks below are of an inference step as timed, not of a re-encoding.
        for m in models.values():
            m.infer()
    for name, m in models.items():
        results[name]['infer_flops'] = count_flops(m.infer, m.model, training=False)
        if args.train:
            results[name]['train_flops'] = count_flops(m.train_step, m.model, training=True)
    if not args.device.startswith('cuda'):
        return_large_frees()
    for name, m in models.items():
        results[name]['infer_peak_mb'] = m.weights_mb + peak_step_memory_mb(m.infer,
                                                                            args.device)
        if args.train:
            results[name]['train_peak_mb'] = m.weights_mb + peak_step_memory_mb(
                m.train_step, args.device)
    for name, r in results.items():
        print(f"{name:>18}: {r['latency_ms']:8.1f} ms/image  {r['images_per_s']:6.2f} images/s"
              f"  peak {r['infer_peak_mb']:6.0f} MB (weights {r['weights_mb']:.0f} MB)"
              + (f"  train {r['train_iter_per_s']:.3f} it/s (batch {args.batch_size}), "
                 f"peak {r['train_peak_mb']:.0f} MB" if args.train else ''), flush=True)
    rates = {n[len('gemm '):]: statistics.median(r) for n, r in gemm_rates.items()}
    rate = max(rates.values())
    print(f'roofline: {GEMM_SIZE}x{GEMM_SIZE} fp32 GEMM '
          + ', '.join(f'{n} {r / 1e9:.1f}' for n, r in rates.items())
          + f' GFLOP/s, the floor at the faster ({torch.get_num_threads()} threads, timed in '
          'turns with the models)', flush=True)
    for name, r in results.items():
        floor = r['infer_flops'] / rate
        r['infer_floor_share'] = floor / (r['latency_ms'] / 1000)
        line = (f"{name:>18}: {r['infer_flops'] / 1e9:7.1f} GFLOP/image, floor "
                f"{1000 * floor:7.1f} ms, {100 * r['infer_floor_share']:3.0f}% of the floor")
        if len(rates) > 1:
            r['infer_mm_floor_share'] = r['infer_flops'] / rates['torch.mm'] / (
                r['latency_ms'] / 1000)
            line += f" ({100 * r['infer_mm_floor_share']:3.0f}% of torch.mm's)"
        if args.train:
            floor = r['train_flops'] / rate
            r['train_floor_share'] = floor * r['train_iter_per_s']
            line += (f"; train {r['train_flops'] / 1e9:.1f} GFLOP/step, floor "
                     f"{floor:.2f} s, {100 * r['train_floor_share']:3.0f}% of the floor")
        print(line, flush=True)
    return results


def scoped_type(name: str) -> str:
    """``name`` as ``'<scope>.<name>'`` for mmdet's registry, found in openseg's model registry
    or a plugin's."""
    if '.' in name:
        return name
    pending = [MODELS]
    while pending:
        registry = pending.pop()
        if name in registry.module_dict:
            return f'{registry.scope}.{name}'
        pending.extend(registry.children.values())
    raise KeyError(f'{name} is not registered in openseg or a plugin')


def mmdet_mask2former(cfg: Config, num_classes: int, fast_layers: bool = False):
    """mmdet's Mask2Former with the openseg config's sizes, closed-set over ``num_classes``;
    a pixel decoder mmdet lacks is openseg's, converted to openseg's fast layers if
    ``fast_layers``."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    m = cfg.model
    dec = m.query_decoder.transformer_decoder
    embed = m.query_decoder.embed_dims
    pixel_decoder = dict(m.pixel_decoder)
    in_channels = pixel_decoder.pop('in_channels')
    feat_channels = pixel_decoder.pop('feat_channels')
    out_channels = pixel_decoder.pop('out_channels')
    own_pixel_decoder = None
    if pixel_decoder['type'].split('.')[-1] == 'MSDeformAttnPixelDecoder':
        pixel_decoder['type'] = 'mmdet.MSDeformAttnPixelDecoder'
    else:
        # mmdet's Mask2FormerHead asserts that its pixel decoder is its deformable one, but
        # calls any module returning (mask features, memories from low to high resolution):
        # the head is built with a one-layer stand-in, which the openseg model's own pixel
        # decoder then replaces.
        own_pixel_decoder = dict(m.pixel_decoder, type=scoped_type(pixel_decoder['type']))
        pixel_decoder = dict(
            type='mmdet.MSDeformAttnPixelDecoder', num_outs=3,
            encoder=dict(num_layers=1, layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=feat_channels, num_levels=3),
                ffn_cfg=dict(embed_dims=feat_channels))),
            positional_encoding=dict(num_feats=feat_channels // 2, normalize=True))
        print(f"mmdet Mask2Former's pixel decoder: {own_pixel_decoder['type']} (as openseg's, "
              + ("with openseg's fast layers)" if fast_layers else 'as built)'), flush=True)
    num_points = m.criterion.num_points
    # mmdet's MaskFormer calls ConfigDict methods on its sub-configs.
    model = MMDET_MODELS.build(ConfigDict(
        type='mmdet.Mask2Former', backbone=m.backbone,
        data_preprocessor=dict(m.data_preprocessor, type='mmdet.DetDataPreprocessor'),
        panoptic_head=dict(
            type='mmdet.Mask2FormerHead', in_channels=in_channels,
            strides=m.pixel_decoder.get('strides', [4, 8, 16, 32]),
            feat_channels=feat_channels, out_channels=out_channels,
            num_things_classes=num_classes,
            num_stuff_classes=0, num_queries=m.query_decoder.num_queries,
            num_transformer_feat_level=3, pixel_decoder=pixel_decoder,
            enforce_decoder_input_project=False,
            positional_encoding=dict(num_feats=embed // 2, normalize=True),
            transformer_decoder=dec,
            loss_cls=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0,
                          reduction='mean', class_weight=[1.0] * num_classes + [0.1]),
            loss_mask=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, reduction='mean',
                           loss_weight=5.0),
            loss_dice=dict(type='mmdet.DiceLoss', use_sigmoid=True, activate=True,
                           reduction='mean', naive_dice=True, eps=1.0, loss_weight=5.0)),
        panoptic_fusion_head=dict(type='mmdet.MaskFormerFusionHead',
                                  num_things_classes=num_classes, num_stuff_classes=0,
                                  loss_panoptic=None, init_cfg=None),
        train_cfg=dict(num_points=num_points, oversample_ratio=3.0,
                       importance_sample_ratio=0.75,
                       assigner=dict(type='mmdet.HungarianAssigner', match_costs=[
                           dict(type='mmdet.ClassificationCost', weight=2.0),
                           dict(type='mmdet.CrossEntropyLossCost', weight=5.0,
                                use_sigmoid=True),
                           dict(type='mmdet.DiceCost', weight=5.0, pred_act=True, eps=1.0)]),
                       sampler=dict(type='mmdet.MaskPseudoSampler')),
        test_cfg=dict(panoptic_on=True, semantic_on=False, instance_on=True,
                      max_per_image=100, iou_thr=0.8, filter_low_score=True)))
    if own_pixel_decoder is not None:
        model.panoptic_head.pixel_decoder = MODELS.build(own_pixel_decoder)
        if fast_layers:
            convert_fast_layers(model.panoptic_head.pixel_decoder)
    return model


def main(argv=None):
    args, suite_argv = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    if args.suite is not None:
        suites = get_plugin_manager().benchmarks()
        if args.suite not in suites:
            known = ', '.join(sorted(suites)) or 'none installed'
            raise ValueError(f"no benchmark suite '{args.suite}' (known: {known})")
        suites[args.suite](cfg, args, suite_argv)
        return
    if args.compare_mmdet:
        # mmdet's Mask2Former has no semantic output: ask both for the same work.
        cfg.model.postprocessor.semantic_on = False
    kept = args.keep_freed_memory and keep_freed_memory()
    torch.manual_seed(0)
    model = init_quietly(MODELS.build(cfg.model))
    if args.vocab_size:
        model.set_vocabulary([f'class {i}' for i in range(args.vocab_size)], [])
    elif model.vocabulary is None:
        # A config trained through VocabularyHook names no classes; use COCO's count.
        model.set_vocabulary([f'class {i}' for i in range(133)], [])
    num_classes = len(model.vocabulary)
    models = {'openseg': ModelSteps(model, args, num_classes)}
    if args.compare_mmdet:
        mmdet_model = init_quietly(mmdet_mask2former(cfg, num_classes, args.mmdet_fast_layers))
        models['mmdet Mask2Former'] = ModelSteps(mmdet_model, args, num_classes)
    print(f'device {device_description(args.device)}, input {args.size}x{args.size}, '
          f'{num_classes} classes, '
          f'median of {args.iters} (models interleaved), peak = weights + working memory; '
          + ("freed memory kept for reuse (as openseg's tools)" if kept else
             "glibc's policy for freed memory (as mmdet's tools)"), flush=True)
    results = measure(models, args)
    if args.vocab_sweep:
        vocabulary_sweep(models['openseg'], args.vocab_sweep, args)
    if args.compare_mmdet:
        ours, theirs = results['openseg'], results['mmdet Mask2Former']
        print(f"latency ratio openseg / mmdet: {ours['latency_ms'] / theirs['latency_ms']:.2f}")
        if args.train:
            print(f"training speed ratio openseg / mmdet (it/s): "
                  f"{ours['train_iter_per_s'] / theirs['train_iter_per_s']:.2f}")


def vocabulary_sweep(steps: ModelSteps, sizes, args) -> None:
    """Inference latency per vocabulary size, sizes taking turns. With cached text embeddings
    it should barely grow: one ``(Q, D) x (D, K)`` product and the post-processing."""
    model = steps.model
    vocabularies = {size: [f'class {i}' for i in range(size)] for size in sizes}

    def with_vocabulary(size):
        def step():
            model.set_vocabulary(vocabularies[size], [])
            steps.infer()
        return step

    for size in sizes:  # the first call encodes (and caches) the names
        start = time.perf_counter()
        with_vocabulary(size)()
        print(f'{size:>6} classes: first call (encodes the names) '
              f'{1000 * (time.perf_counter() - start):.0f} ms', flush=True)
    latency = _interleaved_medians({size: with_vocabulary(size) for size in sizes},
                                   args.iters, 0, args.device)
    for size in sizes:
        print(f'{size:>6} classes: {1000 * latency[size]:8.1f} ms/image (cached)', flush=True)


if __name__ == '__main__':
    run_tool(main, 'benchmark.py')

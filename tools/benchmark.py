"""Inference (and training) speed of a config, optionally against mmdet's Mask2Former.

    python tools/benchmark.py CONFIG [--size 512] [--iters 10] [--compare-mmdet] [--train]

Reports the median latency per image, images/s and peak memory; with ``--compare-mmdet``
builds mmdet's own Mask2Former of the same size (backbone depth, queries, decoder layers,
widths, input size) in the same process and prints the latency ratio openseg / mmdet.
Weights are random: speed does not depend on them. Peak memory is the CUDA allocator's peak on
a GPU, and the process's peak resident set size on a CPU (cumulative across models).
"""
import argparse
import logging
import resource
import statistics
import time

import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData, PixelData

from openseg_core.engine.cli import load_config, run_tool
from openseg_core.registry import MODELS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--size', type=int, default=512, help='square input side')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--vocab-size', type=int, default=None,
                        help='classify into this many synthetic class names')
    parser.add_argument('--train', action='store_true', help='also time training steps')
    parser.add_argument('--batch-size', type=int, default=2, help='training batch size')
    parser.add_argument('--compare-mmdet', action='store_true')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser.parse_args()


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


def _peak_memory_mb(device) -> float:
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(step, iters, warmup, device):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def measure(model, args, num_classes: int, label: str) -> dict:
    device = args.device
    model.to(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    model.eval()
    test_batch = _batch(args.size, 1, False, num_classes)

    @torch.no_grad()
    def infer():
        data = model.data_preprocessor(test_batch, False)
        model(**data, mode='predict')

    latency = _time(infer, args.iters, args.warmup, device)
    result = dict(name=label, latency_ms=1000 * latency, images_per_s=1 / latency,
                  peak_mem_mb=_peak_memory_mb(device))
    if args.train:
        model.train()
        train_batch = _batch(args.size, args.batch_size, True, num_classes)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5)

        def train_step():
            data = model.data_preprocessor(train_batch, True)
            losses = model(**data, mode='loss')
            total = sum(v for k, v in losses.items() if 'loss' in k)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()

        step_time = _time(train_step, max(args.iters // 2, 1), 1, device)
        result.update(train_iter_per_s=1 / step_time, train_peak_mem_mb=_peak_memory_mb(device))
    print(f"{label:>22}: {result['latency_ms']:8.1f} ms/image  {result['images_per_s']:6.2f} "
          f"images/s  peak {result['peak_mem_mb']:8.0f} MB"
          + (f"  train {result['train_iter_per_s']:.3f} it/s (batch {args.batch_size})"
             if args.train else ''), flush=True)
    return result


def mmdet_mask2former(cfg: Config):
    """mmdet's Mask2Former with the openseg config's sizes (closed-set, same class count)."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    m = cfg.model
    dec = m.query_decoder.transformer_decoder
    num_classes = max(len(m.get('thing_classes', ())) + len(m.get('stuff_classes', ())), 1)
    embed = m.query_decoder.embed_dims
    pixel_decoder = dict(m.pixel_decoder)
    for key in ('in_channels', 'feat_channels', 'out_channels'):
        pixel_decoder.pop(key)
    pixel_decoder['type'] = 'mmdet.MSDeformAttnPixelDecoder'
    # mmdet's MaskFormer calls ConfigDict methods on its sub-configs.
    return MMDET_MODELS.build(ConfigDict(
        type='mmdet.Mask2Former', data_preprocessor=m.data_preprocessor, backbone=m.backbone,
        panoptic_head=dict(
            type='mmdet.Mask2FormerHead', in_channels=m.pixel_decoder.in_channels,
            strides=m.pixel_decoder.strides, feat_channels=m.pixel_decoder.feat_channels,
            out_channels=m.pixel_decoder.out_channels, num_things_classes=num_classes,
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
        train_cfg=dict(num_points=m.loss.num_points, oversample_ratio=3.0,
                       importance_sample_ratio=0.75,
                       assigner=dict(type='mmdet.HungarianAssigner', match_costs=[
                           dict(type='mmdet.ClassificationCost', weight=2.0),
                           dict(type='mmdet.CrossEntropyLossCost', weight=5.0,
                                use_sigmoid=True),
                           dict(type='mmdet.DiceCost', weight=5.0, pred_act=True, eps=1.0)]),
                       sampler=dict(type='mmdet.MaskPseudoSampler')),
        test_cfg=dict(panoptic_on=True, semantic_on=False, instance_on=True,
                      max_per_image=100, iou_thr=0.8, filter_low_score=True)))


def main():
    args = parse_args()
    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    init_quietly(model)
    if args.vocab_size:
        model.set_vocabulary([f'class {i}' for i in range(args.vocab_size)], [])
    elif not model.classes:
        # A config trained through VocabularyHook names no classes; use COCO's count.
        model.set_vocabulary([f'class {i}' for i in range(133)], [])
    cfg.model.thing_classes = list(model.classes)
    print(f'device {args.device}, input {args.size}x{args.size}, '
          f'{len(model.classes)} classes, median of {args.iters}', flush=True)
    ours = measure(model, args, len(model.classes), 'openseg')
    if args.compare_mmdet:
        del model
        theirs = measure(init_quietly(mmdet_mask2former(cfg)), args, len(cfg.model.thing_classes),
                         'mmdet Mask2Former')
        print(f"latency ratio openseg / mmdet: {ours['latency_ms'] / theirs['latency_ms']:.2f}")
        if args.train:
            print(f"training speed ratio openseg / mmdet (it/s): "
                  f"{ours['train_iter_per_s'] / theirs['train_iter_per_s']:.2f}")


if __name__ == '__main__':
    run_tool(main, 'benchmark.py')

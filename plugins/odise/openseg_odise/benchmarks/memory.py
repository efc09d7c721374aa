"""``tools/benchmark.py CONFIG --suite odise.memory``: peak memory and latency of ODISE
inference in its lean mode against the official-equivalent path, in one process.

The official-equivalent path is the config as the official code runs it: float32, the UNet
run to its end and the latent decoded to pixels, Stable Diffusion's text model kept, and the
CLIP head with a CLIP image tower of its own. The model is built once (random weights: speed
and memory do not depend on them), measured, turned lean in place
(:func:`~openseg_odise.models.lean.make_lean`) and measured again, at every size. Peak memory
= the model's weights + the working memory of one image (the CUDA allocator's peak, or on a
CPU the resident set's high-water mark above its level before the step). Latency: median of
``--iters`` runs after ``--warmup`` (the first timed run is the one whose memory is measured);
the UNet's share is the time spent in its pass.
"""
import argparse
import copy
import statistics
import time
from typing import Dict, List

import torch
from mmengine.config import ConfigDict

from openseg_core.registry import MODELS
from openseg_core.structures import OpenSegDataSample
from openseg_core.utils.memory import peak_step_memory_mb, return_large_frees

from ..models.lean import default_frozen_dtype, make_lean


def parse(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='benchmark.py --suite odise.memory',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[512, 1024],
                        help='square image sides')
    parser.add_argument('--lean-dtype', default=None,
                        choices=['float32', 'bfloat16', 'float16'],
                        help='frozen weights of the lean path (default: bfloat16 on CPU, '
                             'float16 on GPU)')
    parser.add_argument('--classes', type=int, default=133, help='vocabulary size')
    parser.add_argument('--paths', nargs='+', default=['official', 'lean'],
                        choices=['official', 'lean'],
                        help='measure these paths only (the lean one is always derived from '
                             'the official-equivalent model built first)')
    return parser.parse_args(argv)


def _no_pretrained(cfg):
    """The config with every ``pretrained`` file replaced by random weights."""
    if isinstance(cfg, dict):  # ConfigDict: mmdet's parts read their configs as attributes
        return ConfigDict({k: None if k == 'pretrained' else _no_pretrained(v)
                           for k, v in cfg.items()})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_no_pretrained(v) for v in cfg)
    return cfg


def official_equivalent(model_cfg: dict) -> dict:
    cfg = _no_pretrained(copy.deepcopy(model_cfg))
    extractor = cfg['backbone']['extractor']
    extractor.update(stop_early=False, prune=False, keep_text_encoder=True,
                     frozen_dtype='float32')
    captioner = cfg['backbone'].get('captioner')
    if cfg.get('region_ensemble') and captioner:
        cfg['region_encoder'] = copy.deepcopy(captioner['image_encoder'])
    cfg['test_cfg'] = dict(cfg.get('test_cfg') or {}, inference_mode=False)
    return cfg


def weights_mb(model: torch.nn.Module) -> float:
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        key = (tensor.untyped_storage().data_ptr(), tensor.dtype)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total / 2**20


class _UNetTimer:
    """Seconds spent in the extractor's UNet pass (stopped early or not)."""

    def __init__(self, extractor):
        self.total = 0.0
        run_unet = extractor.run_unet

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return run_unet(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start
        extractor.run_unet = timed


def _inputs(size: int, device: str):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=gen).to(device)
    meta = dict(img_shape=(size, size), ori_shape=(size, size), batch_input_shape=(size, size),
                pad_shape=(size, size), scale_factor=(1.0, 1.0))
    return image, meta


def measure(model, size: int, iters: int, warmup: int, device: str) -> Dict[str, float]:
    image, meta = _inputs(size, device)
    timer = _UNetTimer(model.backbone.extractor)

    def step():
        with torch.no_grad():
            model.predict(image, [OpenSegDataSample(metainfo=meta)])

    for _ in range(warmup):
        step()
    times = []

    def timed_step():
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)

    timer.total = 0.0
    # The step whose memory is measured is the first timed one (a paper-scale step takes
    # minutes on a CPU).
    peak = peak_step_memory_mb(timed_step, device)
    for _ in range(iters - 1):
        timed_step()
    return dict(weights=weights_mb(model), working=peak, latency=statistics.median(times),
                unet_share=timer.total / sum(times))


def lean_vs_official(cfg, args, argv) -> None:
    options = parse(argv)
    device = args.device
    dtype = options.lean_dtype or default_frozen_dtype(device)
    return_large_frees()  # so that the resident set follows live memory
    start = time.perf_counter()
    model = MODELS.build(official_equivalent(cfg.model)).to(device).eval()
    model.set_vocabulary([f'thing {i}' for i in range(options.classes * 3 // 5)],
                         [f'stuff {i}' for i in range(options.classes - options.classes * 3 // 5)])
    print(f'built the official-equivalent model in {time.perf_counter() - start:.0f} s '
          f'(random weights)', flush=True)
    with torch.no_grad():  # the class names' embeddings, once, outside the measurements
        model.encode_vocabulary()
    results = {}
    for path in ('official', 'lean'):
        if path == 'lean':
            make_lean(model, dtype)
        if path not in options.paths:
            continue
        for size in options.sizes:
            results[path, size] = measure(model, size, args.iters, args.warmup, device)
            r = results[path, size]
            print(f'{path:>8} {size:>5} px: weights {r["weights"]:8.0f} MB, working '
                  f'{r["working"]:8.0f} MB, peak {r["weights"] + r["working"]:8.0f} MB, '
                  f'{r["latency"] * 1000:9.0f} ms/image, UNet {100 * r["unet_share"]:.0f} %',
                  flush=True)
    print(f'\nODISE lean ({dtype} frozen parts, pruned, inference mode) vs official-'
          f'equivalent (float32, full UNet and VAE decode), {device}, median of {args.iters}:')
    for size in options.sizes:
        if ('official', size) not in results or ('lean', size) not in results:
            continue
        off, lean = results['official', size], results['lean', size]
        ratio = (lean['weights'] + lean['working']) / (off['weights'] + off['working'])
        print(f'  {size} x {size}: peak memory ratio lean / official {ratio:.2f}, latency ratio '
              f'{lean["latency"] / off["latency"]:.2f}')

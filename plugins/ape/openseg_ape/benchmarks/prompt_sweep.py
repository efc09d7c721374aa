"""``ape.prompt_sweep``: inference cost against the number of prompts, openseg's per-prompt
routing next to the official rule (every prompt fused once any is a sentence), one process.

    python tools/benchmark.py ape::ape_vitl_paper.py --suite ape.prompt_sweep --size 512 \\
        --iters 3 [--vocab-sizes 10 100 1000 10000] [--sentences 10]

Each step detects and segments one ``size x size`` image for ``N`` vocabulary prompts plus
``--sentences`` sentence prompts (``APE.detect``: backbone, encoder with fusion, decoder,
class-wise NMS top-k, masks). Vocabulary embeddings are cached before timing (their first
encoding is reported apart); sentences are encoded in every step, as free text is. Steps of
all settings take turns (medians of ``--iters``); then each step's peak memory is measured
alone (resident set above the state before it). A setting whose fusion attention alone
would exceed ``--memory-limit-gb`` is not run and reported with that estimate.
"""
import argparse
import statistics
import time
from typing import Callable, Dict

import torch
from mmdet.structures import DetDataSample

from openseg_core.registry import MODELS
from openseg_core.utils.memory import peak_step_memory_mb, return_large_frees

SENTENCE = 'the {} object on the left of the big red square'
ORDINALS = ('first', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth',
            'ninth', 'tenth')


class _Parser(argparse.ArgumentParser):
    """Bad options end as the tool's one error line (``benchmark.py: error: ...``)."""

    def error(self, message):
        raise ValueError(f'ape.prompt_sweep: {message}')


def _parse(argv) -> argparse.Namespace:
    parser = _Parser(prog='benchmark.py --suite ape.prompt_sweep')
    parser.add_argument('--vocab-sizes', type=int, nargs='+', default=[10, 100, 1000, 10000])
    parser.add_argument('--sentences', type=int, default=10)
    parser.add_argument('--routings', nargs='+', default=['per_prompt', 'fuse_all'],
                        choices=['per_prompt', 'fuse_all'])
    parser.add_argument('--memory-limit-gb', type=float, default=12.0,
                        help='skip settings whose fusion attention needs more (estimate)')
    args = parser.parse_args(argv)
    if min(args.vocab_sizes) < 1 or args.sentences < 0:
        parser.error('vocabulary sizes must be positive and --sentences non-negative')
    return args


def _peak_mb(step: Callable, device: str) -> float:
    """Memory at the peak of one ``step`` above what was in use before it."""
    # Set after timing: returning large frees at once costs page faults.
    return_large_frees()
    return peak_step_memory_mb(step, device)


def _fusion_attention_gb(model, size: int, tokens: int) -> float:
    """Bytes of one fusion layer's attention maps (logits, their transposed copy and the two
    softmaxes) for one image: ``4 x heads x positions x tokens`` floats."""
    levels = model.num_feature_levels
    positions = sum((size // 2 ** (2 + lvl)) ** 2 for lvl in range(levels))
    vl = model.encoder.vl_layers
    heads = vl[0].attn.num_heads if vl is not None else 0
    return 4 * heads * positions * tokens * 4 / 2**30


def prompt_sweep(cfg, args, argv) -> None:
    opts = _parse(argv)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    model = model.to(args.device).eval()
    image = torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(args.size, args.size),
                                         ori_shape=(args.size, args.size),
                                         scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), False)
    sentences = [SENTENCE.format(ORDINALS[i % 10] + ('' if i < 10 else f' {i}'))
                 for i in range(opts.sentences)]
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(f'device {args.device}, input {args.size}x{args.size}, {opts.sentences} sentences '
          f'+ N vocabulary prompts, median of {args.iters} (settings interleaved), weights '
          f'{weights_mb:.0f} MB', flush=True)

    steps: Dict[tuple, Callable] = {}
    skipped = {}
    for size in opts.vocab_sizes:
        # One word each: a prompt with a space is a sentence (is_sentence), fused every step.
        vocabulary = [f'class{i}' for i in range(size)]
        start = time.perf_counter()
        with torch.no_grad():
            model.embed_vocabulary(vocabulary)
        print(f'{size:>6} vocabulary prompts: first encoding {time.perf_counter() - start:.1f} '
              f's (cached afterwards)', flush=True)
        prompts = vocabulary + sentences
        for routing in opts.routings:
            tokens = (1 + opts.sentences if routing == 'per_prompt' or not opts.sentences
                      else size + opts.sentences)
            need = _fusion_attention_gb(model, args.size, tokens)
            if need > opts.memory_limit_gb:
                skipped[(routing, size)] = need
                continue

            def step(routing=routing, prompts=prompts):
                model.routing = routing
                with torch.no_grad():
                    model.detect(data['inputs'], data['data_samples'], prompts)
            steps[(routing, size)] = step

    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = {key: [] for key in steps}
    for _ in range(args.iters):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            if args.device.startswith('cuda'):
                torch.cuda.synchronize()
            times[key].append(time.perf_counter() - start)
    latency = {key: statistics.median(t) for key, t in times.items()}
    peaks = {key: weights_mb + _peak_mb(step, args.device) for key, step in steps.items()}

    base = {routing: latency.get((routing, min(opts.vocab_sizes)))
            for routing in opts.routings}
    print(f"{'routing':>11} {'prompts':>13} {'latency':>12} {'x smallest':>10} "
          f"{'peak memory':>12}")
    for routing in opts.routings:
        for size in opts.vocab_sizes:
            label = f'{size} + {opts.sentences}'
            if (routing, size) in skipped:
                print(f'{routing:>11} {label:>13}   not run: its fusion attention alone needs '
                      f'~{skipped[(routing, size)]:.0f} GB (> --memory-limit-gb '
                      f'{opts.memory_limit_gb:g})')
                continue
            ms = 1000 * latency[(routing, size)]
            ratio = latency[(routing, size)] / base[routing] if base[routing] else float('nan')
            print(f'{routing:>11} {label:>13} {ms:9.0f} ms {ratio:9.2f}x '
                  f'{peaks[(routing, size)]:9.0f} MB', flush=True)
    largest = max(opts.vocab_sizes)
    if ('per_prompt', largest) in latency and base.get('per_prompt'):
        print(f"per-prompt routing: {largest} + {opts.sentences} prompts cost "
              f"{latency[('per_prompt', largest)] / base['per_prompt']:.2f}x of "
              f"{min(opts.vocab_sizes)} + {opts.sentences}")

"""``tools/benchmark.py CONFIG --suite pixelllm.trace_overhead``: what a trace costs.

Tokens per second of four ways to caption the same images, timed in turns in one process
(medians over rounds; the order rotates every round):

- ``traced``: captioning with the trace read from the decoding pass's own hidden states
  (KV cache; openseg's way);
- ``caption only``: the same decoding without the trace;
- ``traced, no KV cache``: the same, re-running the decoder over the whole prefix each step;
- ``official``: no KV cache, then a second teacher-forced pass for the traces (the released
  inference).

Every way decodes exactly ``--tokens`` tokens (the end token is banned until then), so the
counts are equal and the ratios are ratios of time.
"""
import argparse
import resource
import statistics
import time

import torch

from openseg_core.models.language import StepOutput, generate


def _parse(argv):
    parser = argparse.ArgumentParser(prog='benchmark.py --suite pixelllm.trace_overhead')
    parser.add_argument('--batch', type=int, default=4, help='images per batch')
    parser.add_argument('--tokens', type=int, default=32, help='tokens decoded per caption')
    parser.add_argument('--beam', type=int, default=1, help='beam size')
    parser.add_argument('--rounds', type=int, default=None,
                        help='timed rounds (default: the tool\'s --iters)')
    args = parser.parse_args(argv)
    for name in ('batch', 'tokens', 'beam'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    return args


def _captioner(model, feats, input_size, boxes, index, tokens, beam, trace, use_cache,
               second_pass):
    lm = model.language_model
    state, _ = model.encode_prompts(feats, index, boxes, input_size,
                                    ['narrative'] * len(index), [None] * len(index))
    state_k = lm.repeat(state, beam)

    def step(ids, cache):
        logits, hidden, cache = lm.decode(state_k, ids, cache, use_cache=use_cache)
        logits = logits[:, -1].clone()
        logits[:, lm.end_id] = float('-inf')  # exactly `tokens` tokens for every way
        return StepOutput(logits, cache, hidden[:, -1])

    def run():
        start = torch.full((len(index), 1), lm.start_id, dtype=torch.long)
        out = generate(step, start, lm.end_id, tokens, beam_size=beam,
                       collect_hidden=trace and not second_pass)
        if trace and not second_pass:
            states = [h[1:len(s) + 1] for h, s in zip(out.hidden_states, out.sequences)]
            return model.trace_head(torch.cat(states))
        if second_pass:  # the released inference: re-read the caption, teacher-forced
            ids = torch.tensor([[lm.start_id] + s for s in out.sequences])
            _, hidden, _ = lm.decode(state, ids)
            return model.trace_head(hidden[:, 1:])
        return out.sequences
    return run


def trace_overhead(cfg, args, argv) -> None:
    from openseg_core.registry import MODELS
    opts = _parse(argv)
    rounds = opts.rounds or args.iters
    device = torch.device(args.device)
    model = MODELS.build(cfg.model).to(device).eval()
    size = args.size
    images = torch.randn(opts.batch, 3, size, size, device=device)
    boxes = torch.tensor([[0.0, 0.0, size, size]], device=device).expand(opts.batch, -1)
    index = torch.arange(opts.batch, device=device)
    ways = {'traced': (True, True, False), 'caption only': (False, True, False),
            'traced, no KV cache': (True, False, False), 'official': (True, False, True)}
    times = {name: [] for name in ways}
    with torch.no_grad():
        feats = model.extract_feat(images)
        runs = {name: _captioner(model, feats, (size, size), boxes, index, opts.tokens,
                                 opts.beam, *flags) for name, flags in ways.items()}
        for _ in range(args.warmup):
            for run in runs.values():
                run()
        names = list(ways)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                runs[name]()
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    generated = opts.batch * opts.tokens
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f'pixelllm.trace_overhead: {type(model.language_model).__name__} '
          f'(d_model {model.language_model.d_model}), batch {opts.batch}, {opts.tokens} tokens '
          f'per caption, beam {opts.beam}, {rounds} rounds, medians')
    for name in ways:
        print(f'  {name:<22}{generated / median[name]:10.1f} tokens/s '
              f'({1000 * median[name]:.1f} ms)')
    print(f'trace overhead (traced / caption only - 1): '
          f'{100 * (median["traced"] / median["caption only"] - 1):+.1f}%')
    print(f'KV cache speed-up (no cache / traced): '
          f'{median["traced, no KV cache"] / median["traced"]:.2f}x')
    print(f'speed-up over the released inference (official / traced): '
          f'{median["official"] / median["traced"]:.2f}x')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'peak resident memory: {peak:.0f} MB')

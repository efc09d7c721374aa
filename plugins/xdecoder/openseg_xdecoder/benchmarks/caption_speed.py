"""``xdecoder.caption_speed``: caption tokens per second with and without the decoding cache.

    python tools/benchmark.py xdecoder::xdecoder_focalt_paper.py --suite xdecoder.caption_speed \\
        --size 512 --iters 5 [--tokens 20] [--beam 1] [--region]

One ``size x size`` image (random pixels, random weights: speed does not depend on them) is
encoded once (not timed); then its caption is decoded ``--tokens`` tokens long (the end token
is banned until then, so both ways decode the same number of tokens) in two ways, timed in
turns (medians of ``--iters``, the order alternating every round):

- ``cached``: ``test_cfg.caption_cache=True`` (openseg's default): the latent queries decoded
  once per image, then one token per step through the text tower and the decoder layers with
  the earlier tokens' keys / values cached;
- ``no cache``: the whole prefix through the text tower and the whole query decoder (latent
  queries, masks and all) at every step, as the official code decodes.

tokens/s counts the caption's tokens (with beam search, each step extends ``--beam``
hypotheses; the count is still one per step). The cached time includes its once-per-image
latent pass, which is also reported alone.
"""
import argparse
import resource
import statistics
import time

import torch

from openseg_core.models.language import StepOutput, generate
from openseg_core.registry import MODELS


class _Parser(argparse.ArgumentParser):
    """Bad options end as the tool's one error line."""

    def error(self, message):
        raise ValueError(f'xdecoder.caption_speed: {message}')


def _parse(argv) -> argparse.Namespace:
    parser = _Parser(prog='benchmark.py --suite xdecoder.caption_speed')
    parser.add_argument('--tokens', type=int, default=20, help='tokens decoded per caption')
    parser.add_argument('--beam', type=int, default=None,
                        help="beam size (default: the config's test_cfg.beam_size)")
    parser.add_argument('--region', action='store_true',
                        help='referring captioning: text queries see the centre of the image')
    args = parser.parse_args(argv)
    if args.tokens < 1 or (args.beam is not None and args.beam < 1):
        parser.error('--tokens and --beam must be at least 1')
    return args


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def caption_speed(cfg, args, argv) -> None:
    opts = _parse(argv)
    device = torch.device(args.device)
    if cfg.model.text_encoder.get('pretrained'):
        cfg.model.text_encoder.pretrained = None  # random weights, nothing to load
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).eval()
    beam = opts.beam or model.test_cfg['beam_size']
    max_len = model.query_decoder.caption_pos.num_embeddings - 1
    if opts.tokens > max_len:
        raise ValueError(f'xdecoder.caption_speed: --tokens {opts.tokens} exceeds the '
                         f'{max_len} caption positions after the start token')
    end_id = model.text_encoder.end_token_id
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, args.size, args.size, generator=gen).to(device) * 2 - 1
    with torch.no_grad():
        feats = model.extract_feat(image)
    region = None
    if opts.region:
        region = torch.zeros(feats.mask_features.shape[:1] + feats.mask_features.shape[2:],
                             device=device)
        h, w = region.shape[1:]
        region[:, h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
    start = torch.full((1, 1), model.text_encoder.start_token_id, dtype=torch.long,
                       device=device)

    def captioner(cache: bool):
        def run():
            step = model.caption_step_fn(feats, beam, region, cache=cache)

            def no_end(ids, past):
                out = step(ids, past)
                logits = out.logits.clone()
                logits[:, end_id] = float('-inf')  # exactly --tokens tokens for both ways
                return StepOutput(logits, out.cache)

            return generate(no_end, start, end_id, opts.tokens, beam_size=beam).sequences
        return run

    def context():
        model.query_decoder.caption_context(feats.mask_features, feats.memories, region, beam)

    if not model.query_decoder.supports_caption_cache():
        raise ValueError('xdecoder.caption_speed: this decoder has no cached path')
    if args.iters < 1:
        raise ValueError('xdecoder.caption_speed: --iters must be at least 1')
    runs = {'cached': captioner(True), 'no cache': captioner(False),
            'per-image latent pass': context}
    times = {name: [] for name in runs}
    names = list(runs)
    outputs = {}
    with torch.no_grad():
        for _ in range(args.warmup):
            for run in runs.values():
                run()
        for r in range(args.iters):
            for name in names[r % len(names):] + names[:r % len(names)]:
                _sync(device)
                begin = time.perf_counter()
                outputs[name] = runs[name]()
                _sync(device)
                times[name].append(time.perf_counter() - begin)
    median = {name: statistics.median(t) for name, t in times.items()}
    decoder = model.query_decoder
    tower_layers = len(model.text_encoder.tower.transformer.resblocks)
    print(f'xdecoder.caption_speed: {args.size}x{args.size} image, {decoder.num_latent} latent '
          f'queries, {len(decoder.decoder.layers)} decoder layers of width '
          f'{decoder.decoder.embed_dims}, {tower_layers}-layer text tower; {opts.tokens} '
          f'tokens, beam {beam}{", region" if region is not None else ""}; {args.iters} '
          f'rounds, medians, {torch.get_num_threads()} thread(s), {device}')
    for name in ('cached', 'no cache'):
        print(f'  {name:<10}{opts.tokens / median[name]:10.1f} tokens/s '
              f'({1000 * median[name]:.1f} ms)')
    print(f'  of which the cached way\'s per-image latent pass: '
          f'{1000 * median["per-image latent pass"]:.1f} ms')
    print(f'cache speed-up (no cache / cached): {median["no cache"] / median["cached"]:.2f}x')
    same = outputs['cached'] == outputs['no cache']
    print(f'same tokens: {"yes" if same else "no"}')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'peak resident memory: {peak:.0f} MB')

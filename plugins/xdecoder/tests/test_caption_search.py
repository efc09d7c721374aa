"""Greedy vs beam search on hand-made next-token tables."""
import torch

from openseg_xdecoder.models.caption_search import beam_search, greedy_search

START, END, A, B, C = range(5)
EPS = 1e-9


def make_step(table):
    """``table[last token]`` = next-token probabilities over the 5 tokens."""
    def step(ids):
        rows = [table.get(int(t), [0.2] * 5) for t in ids[:, -1]]
        return torch.tensor(rows).clamp(min=EPS).log()
    return step


# From the start, A (0.6) looks best, but after A nothing is likely; B (0.4) is followed by
# the end with certainty: P(A A ...) <= .6 * .35 = .21 < P(B END) = .4.
TABLE = {START: [0, 0, 0.6, 0.4, 0], A: [0, 0.33, 0.35, 0.32, 0], B: [0, 1, 0, 0, 0]}


def test_greedy_takes_the_locally_best_token():
    assert greedy_search(make_step(TABLE), 1, START, END, max_len=2, device='cpu') == [[A, A]]


def test_beam_finds_the_more_likely_sequence_for_every_row():
    ids = beam_search(make_step(TABLE), 2, 3, START, END, max_len=5, device='cpu',
                      length_penalty=0.0)
    assert ids == [[B], [B]]


def test_length_penalty_normalises_by_length():
    # "A END": log .55 over 2 tokens; "B C END": log .45 over 3 tokens (higher per token).
    table = {START: [0, 0, 0.55, 0.45, 0], A: [0, 1, 0, 0, 0], B: [0, 0, 0, 0, 1],
             C: [0, 1, 0, 0, 0]}
    step = make_step(table)
    assert beam_search(step, 1, 2, START, END, 4, 'cpu', length_penalty=0.0) == [[A]]
    assert beam_search(step, 1, 2, START, END, 4, 'cpu', length_penalty=1.0) == [[B, C]]

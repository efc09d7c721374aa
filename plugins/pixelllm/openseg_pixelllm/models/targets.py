"""Training targets of PixelLLM: which region each caption token talks about.

Localized Narratives give a box per *utterance* (a spoken word, timed against the mouse
trace); the language model sees *tokens*. Two ways to map one to the other:

``'relative'`` (the official data pipeline)
    Utterances with a non-empty text and a box whose centre is not at the origin get
    positions ``k / n`` (``k = 1..n``); the ``m`` tokens get positions ``j / m`` rescaled to
    the utterances' range, and each takes the box of the nearest utterance. No word
    alignment is needed, at the price of a shift: the first half of the tokens lands one
    utterance late when tokens and utterances are as many (token ``j`` of ``n`` maps to
    utterance ``j + 1`` while ``j < n / 2``).
``'words'``
    Each token takes the box of the whitespace-separated caption word it belongs to (its
    character offsets), the caption's ``k``-th word being the ``k``-th utterance; captions
    whose word count differs from the utterance count fall back to ``'relative'``.
"""
import math
import re
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

NAN_BOX = (math.nan,) * 4


def _valid_utterance(word: str, box) -> bool:
    return bool(word.strip()) and box is not None and all(
        (c0 + c1) / 2 > 1e-5 for c0, c1 in ((box[0], box[2]), (box[1], box[3])))


def relative_alignment(num_tokens: int, words: Sequence[str],
                       boxes: Sequence[Optional[Sequence[float]]]) -> List[tuple]:
    """The official token-to-utterance mapping (module docstring) -> a box (or NaNs) per
    token."""
    valid = [_valid_utterance(w, b) for w, b in zip(words, boxes)]
    count = sum(valid)
    if not count or not num_tokens:
        return [NAN_BOX] * num_tokens
    positions, seen = [], 0
    for ok in valid:
        seen += ok
        positions.append(seen / count if ok else -1.0)
    start = min(p for p in positions if p > 0)
    end = max(positions)
    out = []
    for j in range(1, num_tokens + 1):
        token = start + j / num_tokens * (end - start)
        nearest = min(range(len(positions)), key=lambda k: (token - positions[k]) ** 2)
        out.append(tuple(boxes[nearest]))
    return out


def token_words(caption: str, offsets: Sequence[tuple]) -> Tuple[List[int], int]:
    """Per token (character ``offsets`` into ``caption``) the index of the whitespace-
    separated word it belongs to, and the number of words."""
    starts = [m.start() for m in re.finditer(r'\S+', caption)]
    return [max(sum(1 for s in starts if s <= start) - 1, 0) for start, _ in offsets], \
        len(starts)


def word_alignment(caption: str, offsets: Sequence[tuple], words: Sequence[str],
                   boxes: Sequence[Optional[Sequence[float]]]) -> Optional[List[tuple]]:
    """Per token the box of its caption word, or ``None`` when the caption has not one word
    per utterance."""
    index, count = token_words(caption, offsets)
    if count != len(words):
        return None
    return [tuple(boxes[i]) if boxes[i] is not None else NAN_BOX for i in index]


def token_boxes(tokenizer, caption: str, token_ids: Sequence[int], words: Sequence[str],
                boxes: Sequence[Optional[Sequence[float]]], mode: str = 'relative') -> Tensor:
    """``(T, 4)`` the normalised box each of the caption's ``T`` tokens (``token_ids``, the
    tokenizer's ids of ``caption``, possibly cut) talks about; NaN rows for none."""
    if mode not in ('relative', 'words'):
        raise ValueError(f"token alignment must be 'relative' or 'words', got {mode!r}")
    count = len(token_ids)
    aligned = None
    if mode == 'words':
        enc = tokenizer(caption, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc['offset_mapping'][:count]
        aligned = word_alignment(caption, offsets, words, boxes)
    if aligned is None:
        aligned = relative_alignment(count, words, boxes)
    return torch.tensor(aligned, dtype=torch.float32).reshape(count, 4)


def boxes_to_corners(boxes: Tensor) -> Tensor:
    """``(..., 4)`` ``x1, y1, x2, y2`` -> ``(..., 2, 2)`` the two corners (PixelLLM's two
    points per token)."""
    return boxes.view(*boxes.shape[:-1], 2, 2)


def corners_to_boxes(points: Tensor) -> Tensor:
    """``(..., P, 2)`` points -> ``(..., 4)`` their bounding box (min / max), the official
    ``points_to_boxes``."""
    return torch.cat([points.amin(-2), points.amax(-2)], dim=-1)

"""Which region each caption token talks about: the official relative mapping (with its
shift) and the word alignment."""
import math

import pytest
import torch

from openseg_pixelllm.models.targets import (corners_to_boxes, relative_alignment,
                                             token_boxes, token_words)
from openseg_pixelllm.tokenizers import shapes_tokenizer, word_level_tokenizer

BOXES = [(0.1, 0.1, 0.2, 0.2), (0.3, 0.3, 0.4, 0.4), (0.5, 0.5, 0.6, 0.6),
         (0.7, 0.7, 0.8, 0.8)]


def test_relative_mapping_reproduces_the_official_shift():
    # 4 utterances at 1/4..1; 4 tokens at 1/4 + j/4 * 3/4: 0.4375, 0.625 (a tie: the
    # first), 0.8125, 1.0 -> utterances b, b, c, d: the first word's box is never used
    out = relative_alignment(4, ['a', 'b', 'c', 'd'], BOXES)
    assert out == [BOXES[1], BOXES[1], BOXES[2], BOXES[3]]


def test_relative_mapping_skips_invalid_utterances():
    boxes = [BOXES[0], None, BOXES[2], (0.0, 0.0, 0.0, 0.0)]  # no trace; trace at the origin
    out = relative_alignment(2, ['a', 'b', 'c', 'd'], boxes)
    # valid: a (1/2), c (1) -> tokens at 0.75 (tie: the first, a) and 1.0 (c)
    assert out == [BOXES[0], BOXES[2]]
    assert all(math.isnan(c) for c in relative_alignment(3, ['a'], [None])[0])


def test_word_alignment_follows_each_tokens_word():
    tok = word_level_tokenizer(['a', 'red', 'square', ','])
    caption = 'a red square, a square'
    ids = tok(caption, add_special_tokens=False)['input_ids']
    assert len(ids) == 6  # the comma is a token of its own
    words = ['a', 'red', 'square', 'a', 'square']
    boxes = token_boxes(tok, caption, ids, words, BOXES + [BOXES[0]], mode='words')
    expected = [BOXES[0], BOXES[1], BOXES[2], BOXES[2], BOXES[3], BOXES[0]]  # "," with "square,"
    torch.testing.assert_close(boxes, torch.tensor(expected))
    # a caption whose words do not match the utterances falls back to the relative mapping
    fallback = token_boxes(tok, caption, ids, words[:4], BOXES, mode='words')
    torch.testing.assert_close(fallback, torch.tensor(relative_alignment(6, words[:4], BOXES)))
    offsets = tok(caption, add_special_tokens=False, return_offsets_mapping=True)
    assert token_words(caption, offsets['offset_mapping']) == ([0, 1, 2, 2, 3, 4], 5)


def test_boxes_from_points():
    points = torch.tensor([[[30., 5.], [10., 25.]]])
    torch.testing.assert_close(corners_to_boxes(points), torch.tensor([[10., 5., 30., 25.]]))


def test_shapes_tokenizer_covers_every_generated_word(shapes_root):
    import json
    tok = shapes_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    texts = []
    for split in ('train', 'val', 'val_open'):
        texts += [c['caption'] for c in json.loads(
            (shapes_root / 'annotations' / f'captions_{split}.json').read_text())['annotations']]
        texts += [s['sent'] for r in json.loads(
            (shapes_root / 'annotations' / f'refs_{split}.json').read_text())
            for s in r['sentences']]
    for text in texts:
        ids = tok(text, add_special_tokens=False)['input_ids']
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == text
    with pytest.raises(ValueError, match='unknown tokenizer'):
        from openseg_pixelllm.tokenizers import build_tokenizer
        build_tokenizer(dict(kind='bpe'))

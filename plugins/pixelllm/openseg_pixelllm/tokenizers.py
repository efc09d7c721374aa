"""Tokenizers that exist offline: a word-level one generated from the ``shapes`` world, and a
language model's own tokenizer read from its local directory.

Both follow T5's conventions, which the model relies on: padding id 0 (also T5's decoder start
token), end-of-sequence id 1, unknown id 2.
"""
import os
from typing import Iterable, Optional, Sequence

from transformers import PreTrainedTokenizerBase

# Words the `shapes` generator writes besides its class, colour and size names (captions,
# referring expressions, positions), and the task prompts of the tiny configs.
SHAPES_FUNCTION_WORDS = (
    'a', 'an', 'the', 'and', 'in', 'front', 'of', 'below', 'above', 'with', 'on', 'left',
    'right', 'at', 'top', 'bottom', 'photo', 'picture', 'shape', 'close-up', 'patch',
    'long', 'short', 'image', 'caption', 'where', 'is', 'object', 'what', ',', '.', ':')


def shapes_words() -> list:
    """Every word the ``shapes`` generator can write, held-out classes included, sorted."""
    from openseg_core.datasets.shapes.generator import (COLOURS, SIZES, STUFF_CLASSES,
                                                        THING_CLASSES)
    return sorted(set(THING_CLASSES) | set(STUFF_CLASSES) | set(COLOURS) | set(SIZES)
                  | set(SHAPES_FUNCTION_WORDS))


def word_level_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerBase:
    """A ``transformers`` fast tokenizer with one token per word or punctuation mark of
    ``words`` (ids from 3, in order), T5's special ids below them; other words are
    ``<unk>``. Built by the ``tokenizers`` library in memory: nothing to download."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {'<pad>': 0, '</s>': 1, '<unk>': 2}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.normalizer = normalizers.Lowercase()
    # Words keep their hyphens ("close-up"); other punctuation is a token of its own.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix='##', cleanup=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token='<pad>', eos_token='</s>',
                                   unk_token='<unk>')
    return fast


def shapes_tokenizer() -> PreTrainedTokenizerBase:
    """The word-level tokenizer of the ``shapes`` world (:func:`shapes_words`)."""
    return word_level_tokenizer(shapes_words())


# What a local Hugging Face model directory holds for its tokenizer (any one suffices).
TOKENIZER_FILES = ('tokenizer.json', 'spiece.model', 'tokenizer.model', 'vocab.json')


def pretrained_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a local model directory (``AutoTokenizer``, no download).

    Raises:
        FileNotFoundError: one line naming the directory and the files it lacks.
    """
    from transformers import AutoTokenizer
    if not os.path.isdir(path) or not any(os.path.isfile(os.path.join(path, f))
                                          for f in TOKENIZER_FILES):
        raise FileNotFoundError(
            f'no tokenizer in {path}: it needs one of {", ".join(TOKENIZER_FILES)} (save the '
            "language model's tokenizer there with tokenizer.save_pretrained(path))")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def build_tokenizer(cfg) -> PreTrainedTokenizerBase:
    """``'shapes'`` (:func:`shapes_tokenizer`), ``dict(words=[...])``
    (:func:`word_level_tokenizer`) or ``dict(path=DIR)`` (a local model directory's own
    tokenizer, :func:`pretrained_tokenizer`)."""
    if cfg is None or cfg == 'shapes':
        return shapes_tokenizer()
    if isinstance(cfg, dict) and set(cfg) == {'words'}:
        return word_level_tokenizer(cfg['words'])
    if isinstance(cfg, dict) and set(cfg) == {'path'}:
        return pretrained_tokenizer(cfg['path'])
    raise ValueError(f"unknown tokenizer {cfg!r}; use 'shapes', dict(words=[...]) or "
                     'dict(path=DIR)')


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], append_eos: bool,
           max_length: int):
    """Token ids of ``texts`` without padding, each cut to ``max_length`` (the end token kept
    last when appended). Returns a list of lists."""
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)['input_ids']
        if append_eos:
            ids = ids[:max_length - 1] + [tokenizer.eos_token_id]
        else:
            ids = ids[:max_length]
        out.append(ids)
    return out

"""Image-captioning metrics: BLEU-4 and CIDEr-D, as the COCO caption evaluation computes them."""
import re
from collections import OrderedDict
from typing import List, Sequence

from mmengine.evaluator import BaseMetric

from openseg_core.registry import METRICS

# The COCO evaluation (pycocoevalcap) tokenises with Stanford's PTBTokenizer, which runs Java,
# then drops the tokens below. This is a pure-Python stand-in for English captions that gives
# the same tokens on the cases captions have (checked against PTBTokenizer 3.4.1 on ~100
# tricky captions): lowercasing, punctuation split off and dropped, clitics split ("don't" ->
# "do n't", "dog's" -> "dog 's"), abbreviations, numbers and in-word hyphens kept whole.
# Rare constructs (emoticons, "y'all", "@name") may tokenise differently, which moves scores
# by far less than the spread between models.
#
# The list is pycocoevalcap's verbatim. Its bracket entries are upper case while the tokenizer
# is run with -lowerCase, so brackets survive there as "-lrb-" etc.; we keep them too, to give
# the numbers papers report.
PUNCTUATIONS = frozenset(["''", "'", '``', '`', '-LRB-', '-RRB-', '-LCB-', '-RCB-',
                          '.', '?', '!', ',', ':', '-', '--', '...', ';'])
_PTB_FORMS = {'(': '-lrb-', ')': '-rrb-', '[': '-lsb-', ']': '-rsb-', '{': '-lcb-', '}': '-rcb-',
              '"': "''"}
# Typographic characters PTBTokenizer maps onto their ASCII forms.
_UNICODE = str.maketrans({'\u201c': '"', '\u201d': '"', '\u201e': '"', '\u2018': "'",
                          '\u2019': "'", '\u2026': '...', '\u2013': '--', '\u2014': '--',
                          '\n': ' ', '\r': ' '})
# Words whose trailing period is part of the word for PTBTokenizer: the common part of its
# list (captions rarely need more), without "sat." and "sun.", which it splits like any word.
_ABBREVIATIONS = (
    'mr|mrs|ms|dr|jr|sr|st|mt|ft|rd|ave|blvd|lt|col|capt|sgt|gen|gov|sen|rep|rev|hon|prof|'
    'bros|ltd|inc|corp|co|assn|dept|univ|mfg|etc|vs|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|'
    'nov|dec|mon|tue|tues|wed|thu|thurs|fri')
_TOKEN = re.compile(
    r"""(?:[^\W\d_]\.){2,}                    # acronyms: u.s., p.m., e.g.
      | (?<![\w.])[^\W\d_]\.(?![\w.])        # initials: "vitamin c.", "plan b."
      | \b(?:%s)\.(?!\w)                     # abbreviations: "mr.", "st."
      | \bno\.(?=\s*\d)                      # "no. 5"
      | '(?:n'|\d0s|s|re|ve|ll|d|m)(?!\w)    # "rock 'n' roll", "the '90s", "park 's"
      | (?<!\w)-?\d+(?:[.,:/]\d+)*(?:-\w+)*(?=\W|$)  # -5, 3.5, 1,000, 10:30, 1/2, 4-wheeler
      | \w+(?:[-'.&/]\w+)*                   # words: t-shirt, o'clock, at&t, tv/monitor
      | \.{3,} | -{2,} | [?!]+ | \S           # "...", "--", "?!" are one token each
    """ % _ABBREVIATIONS, re.VERBOSE | re.IGNORECASE)
_CLITIC = re.compile(r"^(\w+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {'cannot': 'can not', 'gonna': 'gon na', 'gotta': 'got ta', 'wanna': 'wan na',
                'lemme': 'lem me', 'gimme': 'gim me'}


def tokenize_caption(text: str) -> str:
    """PTB-tokenise, lowercase and drop punctuation, as the COCO caption evaluation does.

    Returns the tokens joined by single spaces, the form pycocoevalcap's scorers take.
    """
    tokens = []
    for token in _TOKEN.findall(text.translate(_UNICODE).lower()):
        clitic = _CLITIC.match(token)
        if clitic:
            tokens.extend(clitic.groups())
        elif token in _SPLIT_WORDS:
            tokens.extend(_SPLIT_WORDS[token].split())
        elif token.startswith('...'):
            tokens.append('...')
        else:
            tokens.append(_PTB_FORMS.get(token, token))
    return ' '.join(t for t in tokens if t not in PUNCTUATIONS)


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """Captioning BLEU-4 and CIDEr (CIDEr-D, the COCO-caption variant), in percent.

    Both are corpus scores over the evaluated set, computed by pycocoevalcap's scorers on
    captions tokenised by :func:`tokenize_caption`, and multiplied by 100 as papers report
    them ("CIDEr 117.2" is a corpus CIDEr-D of 1.172). CIDEr's n-gram weights are IDFs over
    the set's images, so it is 0 for a set of one image and only comparable between runs on
    the same set.

    Each data sample needs ``pred_caption`` (str, the generated caption; empty scores 0) and
    ``captions`` (list of str, the ground-truth references, packed by ``PackOpenSegInputs``);
    ``img_id`` is used in error messages.
    """

    default_prefix = 'caption'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            img_id = sample.get('img_id', '?')
            pred = sample.get('pred_caption')
            if not isinstance(pred, str):
                raise ValueError(
                    f'CaptionMetric: sample img_id={img_id} has pred_caption={pred!r}; it needs '
                    'the generated caption as a str. Evaluate with a captioning model whose '
                    'predict() sets data_sample.pred_caption.')
            refs = sample.get('captions')
            if isinstance(refs, str) or not refs:
                raise ValueError(
                    f'CaptionMetric: sample img_id={img_id} has captions={refs!r}; it needs a '
                    'non-empty list of reference captions. Pack the test pipeline with '
                    'PackOpenSegInputs (it keeps the captions) and use a dataset that loads '
                    'them (e.g. CocoCaptionsDataset).')
            self.results.append((tokenize_caption(pred), [tokenize_caption(r) for r in refs]))

    def compute_metrics(self, results: List[tuple]) -> dict:
        # pycocoevalcap ships ~100 MB of Java tools; only its pure-Python scorers are imported.
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider

        if not results:
            raise ValueError('CaptionMetric: no samples were evaluated; check that the '
                             'evaluator runs on a non-empty captioning dataset.')
        # Keyed by position, not img_id: the scorers need unique keys and nothing else.
        preds = {i: [pred] for i, (pred, _) in enumerate(results)}
        refs = {i: ref for i, (_, ref) in enumerate(results)}
        bleu, _ = Bleu(4).compute_score(refs, preds, verbose=0)
        cider, _ = Cider().compute_score(refs, preds)
        return OrderedDict([('BLEU-4', 100 * float(bleu[3])), ('CIDEr', 100 * float(cider))])

"""Noun phrases of a caption, offline: ODISE's grounding words without NLTK.

The official code tags captions with NLTK's perceptron tagger and chunks them with two regular
grammars over Penn tags::

    NBAR: {<NN.*|JJ>*<NN.*>}                 nouns and adjectives ending in a noun
    NP:   {<NBAR><IN><NBAR>} | {<NBAR>}      (second grammar) two NBARs joined by a preposition

and keeps the union of both grammars' phrases. NLTK downloads its tagger model at run time,
which openseg does not allow; no registry package ships it. So the tagger here is written
out: closed-class words (determiners, prepositions, conjunctions, pronouns, auxiliaries,
numbers, common adverbs) from fixed lists, adjectives from a list of common ones (colours,
sizes, shapes, materials, ages...) and suffixes, verbs from a list of common ones and the
``-ing`` / ``-ed`` forms that follow a noun or a pronoun, and every other word a noun. The
chunk grammars are then applied as the official ones are. It covers caption language
(COCO-style descriptions), not arbitrary prose; ``extra_adjectives`` / ``extra_verbs`` extend
it for a dataset's own words.
"""
import re
from typing import Iterable, List, Sequence, Tuple

DETERMINERS = frozenset(
    'a an the this that these those some any each every no another either neither all both '
    'several many much few its their his her my your our whose which what'.split())
PREPOSITIONS = frozenset(
    'in on at of with by for from into onto over under above below behind beside besides '
    'between near through across along around inside outside upon beneath underneath '
    'against among toward towards off down up out about like past via atop amid during '
    'without within beyond before after until than as'.split())
CONJUNCTIONS = frozenset('and or but nor yet so while whereas'.split())
PRONOUNS = frozenset(
    'i you he she it we they me him us them myself itself themselves someone something '
    'somebody everyone everything nothing one'.split())
AUXILIARIES = frozenset(
    'is are was were be been being am has have had having do does did can could will would '
    'shall should may might must'.split())
ADVERBS = frozenset(
    'very too also there here together just not only almost nearly quite rather really so '
    'then now still well away back again even slightly partly mostly next'.split())
NUMBERS = frozenset(
    'two three four five six seven eight nine ten eleven twelve dozen hundred '
    'first second third'.split())
ADJECTIVES = frozenset(
    # colours
    'red green blue yellow orange purple pink brown black white gray grey golden silver '
    'dark light bright pale colorful colourful '
    # size and shape
    'small big large little tiny huge giant medium tall short long wide narrow thin thick '
    'round square flat high low deep shallow '
    # age, state, quality
    'old young new empty full open closed clean dirty wet dry hot cold warm fresh busy '
    'quiet beautiful pretty ugly nice good bad great happy sad cute sunny cloudy snowy '
    'rainy grassy sandy rocky wooden metal plastic glass stone brick leather paper '
    'electric modern ancient vintage various different same other several single double '
    'left right upper lower front top middle bottom main whole half '
    'adult baby male female wild domestic'.split())
VERBS = frozenset(
    'sit sits stand stands hold holds look looks ride rides play plays walk walks eat eats '
    'fly flies lie lies lay lays run runs carry carries wear wears watch watches stare stares '
    'wait waits cross crosses drive drives park parks jump jumps swim swims throw throws '
    'catch catches hit hits cut cuts use uses show shows contain contains cover covers '
    'fill fills float floats hang hangs lean leans rest rests grow grows graze grazes '
    'appear appears sits stands shows is are surround surrounds face faces touch touches '
    'make makes take takes get gets go goes come comes see sees'.split())
ADJECTIVE_SUFFIXES = ('ful', 'ous', 'ive', 'able', 'ible', 'less', 'ish', 'ical', 'ic')

_TOKEN = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*|\d+(?:\.\d+)?|[^\sA-Za-z\d]")


def tokenize(text: str) -> List[str]:
    """Words, numbers and punctuation marks, as separate tokens."""
    return _TOKEN.findall(text)


class NounPhraseExtractor:
    """``extractor(caption) -> [noun phrases]``: ODISE's ``get_noun_phrase`` (both grammars,
    duplicates removed), in order of first appearance.

    Args:
        extra_adjectives, extra_verbs: words to tag as adjectives / verbs besides the built-in
            lists (lower case).
    """

    def __init__(self, extra_adjectives: Iterable[str] = (), extra_verbs: Iterable[str] = ()):
        self.adjectives = ADJECTIVES | {w.lower() for w in extra_adjectives}
        self.verbs = VERBS | {w.lower() for w in extra_verbs}

    # ------------------------------------------------------------------ tagging
    def tag(self, tokens: Sequence[str]) -> List[Tuple[str, str]]:
        """Penn-style tags: ``NN`` / ``NNS`` nouns, ``JJ`` adjectives, ``IN`` prepositions and
        the closed classes (``DT``, ``CC``, ``PRP``, ``VB``, ``RB``, ``CD``, ``.``)."""
        tags = [self._word_tag(token.lower()) for token in tokens]
        lexical = [tag in ('VB', 'JJ') and tokens[i].lower() not in AUXILIARIES
                   for i, tag in enumerate(tags)]
        for i, token in enumerate(tokens):
            before = tags[i - 1] if i else None
            after = tags[i + 1] if i + 1 < len(tags) else None
            if tags[i] == 'NN?':
                tags[i] = self._open_class_tag(token.lower(), before, after)
            elif lexical[i] and tags[i] == 'VB' and before in ('DT', 'JJ', 'CD'):
                # A verb form right after a determiner or an adjective is a noun: "a red
                # cross", "the park".
                tags[i] = self._noun_tag(token.lower())
        for i, token in enumerate(tokens):
            before = tags[i - 1] if i else None
            after = tags[i + 1] if i + 1 < len(tags) else None
            if (lexical[i] and tags[i] == 'JJ' and before in ('DT', 'JJ', 'CD', 'IN')
                    and after not in ('NN', 'NNS', 'JJ')):
                # An adjective that qualifies nothing after it is the noun it names: "a large
                # blue square", "on top of".
                tags[i] = self._noun_tag(token.lower())
        return list(zip(tokens, tags))

    @staticmethod
    def _noun_tag(word: str) -> str:
        return 'NNS' if word.endswith('s') and not word.endswith('ss') else 'NN'

    def _open_class_tag(self, word: str, before, after) -> str:
        if word.endswith(('ing', 'ed')) and len(word) > 4:
            # A participle after a noun or a pronoun is the verb of a clause ("a man riding a
            # wave"); after a determiner or an adjective it names or qualifies a thing ("a
            # building", "a parked car").
            if before in ('NN', 'NNS', 'PRP', 'VB', 'RB') or before is None:
                return 'VB'
            if word.endswith('ed') and after in ('NN', 'NNS', 'NN?'):
                return 'JJ'
        return self._noun_tag(word)

    def _word_tag(self, word: str) -> str:
        if not word[0].isalnum():
            return '.'
        if word[0].isdigit() or word in NUMBERS:
            return 'CD'
        for words, tag in ((DETERMINERS, 'DT'), (PREPOSITIONS, 'IN'), (CONJUNCTIONS, 'CC'),
                           (PRONOUNS, 'PRP'), (AUXILIARIES, 'VB'), (ADVERBS, 'RB'),
                           (self.verbs, 'VB'), (self.adjectives, 'JJ')):
            if word in words:
                return tag
        if word == 'to':
            return 'TO'
        if word.endswith(ADJECTIVE_SUFFIXES) and len(word) > 5:
            return 'JJ'
        return 'NN?'  # resolved with the neighbours in :meth:`tag`

    # ------------------------------------------------------------------ chunking
    @staticmethod
    def _nbars(tagged: Sequence[Tuple[str, str]]) -> List[Tuple[int, int]]:
        """Spans ``[start, end)`` of ``{<NN.*|JJ>*<NN.*>}`` chunks, left to right, longest."""
        spans, i = [], 0
        while i < len(tagged):
            j = i
            while j < len(tagged) and tagged[j][1] in ('NN', 'NNS', 'JJ'):
                j += 1
            # The run must end in a noun: give back trailing adjectives.
            end = j
            while end > i and tagged[end - 1][1] == 'JJ':
                end -= 1
            if end > i:
                spans.append((i, end))
            i = max(j, i + 1)
        return spans

    def phrases(self, caption: str, with_preposition: bool) -> List[str]:
        """The phrases of one grammar. Adjacent chunks with nothing between them merge into
        one phrase, as the official loop joins them."""
        tokens = tokenize(caption)
        tagged = self.tag(tokens)
        spans = self._nbars(tagged)
        if with_preposition:
            merged, k = [], 0
            while k < len(spans):
                if (k + 1 < len(spans) and spans[k][1] + 1 == spans[k + 1][0]
                        and tagged[spans[k][1]][1] == 'IN'):
                    merged.append((spans[k][0], spans[k + 1][1]))
                    k += 2
                else:
                    merged.append(spans[k])
                    k += 1
            spans = merged
        out, current, last_end = [], [], None
        for start, end in spans:
            if current and start != last_end:
                out.append(' '.join(current))
                current = []
            current.extend(tokens[start:end])
            last_end = end
        if current:
            out.append(' '.join(current))
        return out

    def __call__(self, caption: str) -> List[str]:
        found = self.phrases(caption, False) + self.phrases(caption, True)
        return list(dict.fromkeys(p.lower() for p in found))

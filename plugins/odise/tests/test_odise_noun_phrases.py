"""The offline noun-phrase chunker on the shapes captions and on caption language."""
import json

import pytest

from openseg_odise.text import NounPhraseExtractor

THINGS = ('circle', 'square', 'triangle', 'cross', 'diamond', 'star')
STUFF = ('sky', 'grass', 'sand', 'water')


@pytest.fixture(scope='module')
def extractor():
    return NounPhraseExtractor()


def test_shapes_scene_caption(extractor):
    caption = ('a small red circle, a large blue square and a medium green triangle in front '
               'of grass below sky')
    phrases = extractor(caption)
    for expected in ('small red circle', 'large blue square', 'medium green triangle', 'grass',
                     'sky', 'grass below sky'):
        assert expected in phrases
    # Function words never start or end a phrase.
    assert not any(p.split()[0] in ('a', 'and', 'in', 'of') for p in phrases)


def test_every_shapes_caption_names_its_shapes(extractor, shapes_root):
    """Each class named in a training caption comes out inside a noun phrase, and the
    colours stay attached to their shape (the last phrase of a caption without a final
    period too)."""
    data = json.loads((shapes_root / 'annotations' / 'captions_train.json').read_text())
    captions = [a['caption'] for a in data['annotations']]
    assert len(captions) > 20
    for caption in captions:
        phrases = extractor(caption)
        words = set(' '.join(phrases).split())
        for name in THINGS + STUFF:
            if name in caption.replace(',', ' ').split():
                assert name in words, (caption, phrases)
        assert all(p == p.strip() and p for p in phrases)


@pytest.mark.parametrize('caption, expected', [
    ('A man riding a wave on top of a surfboard.', {'man', 'wave', 'surfboard'}),
    ('Two dogs are playing with a frisbee in the park.', {'dogs', 'frisbee', 'park'}),
    ('a red cross on sand and water.', {'red cross', 'sand', 'water'}),
    ('a parked car next to a building', {'parked car', 'building'}),
])
def test_caption_language(extractor, caption, expected):
    phrases = set(extractor(caption))
    assert expected <= phrases, phrases
    assert not phrases & {'riding', 'playing', 'are', 'next'}


def test_no_noun_gives_nothing(extractor):
    assert extractor('') == []
    assert extractor('it is very nice.') == []


def test_prepositional_phrases_join_two_nouns(extractor):
    assert 'red cross on sand' in extractor('a red cross on sand.')

import pytest

from openseg_core.models import NoVocabularyError, OpenVocabMaskSegmentor, Vocabulary


def test_names_things_first_and_splits():
    vocabulary = Vocabulary(('dog', ' cat '), ('sky',))
    assert vocabulary.names == ('dog', 'cat', 'sky')  # stripped
    assert (len(vocabulary), vocabulary.num_things, vocabulary.num_stuff) == (3, 2, 1)
    assert vocabulary.is_thing(1) and not vocabulary.is_thing(2)
    assert Vocabulary.from_metainfo(dict(thing_classes=['a'], stuff_classes=['b'])).stuff == (
        'b',)
    assert Vocabulary.from_metainfo(dict(classes=('a', 'b'))).things == ('a', 'b')


@pytest.mark.parametrize('things, stuff, message', [
    ((), (), 'empty'),
    (('dog', ''), (), 'empty class name'),
    (('dog',), ('dog',), 'repeats'),
])
def test_bad_vocabularies_say_what_is_wrong(things, stuff, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(things, stuff)


def test_a_string_is_not_a_list_of_names():
    with pytest.raises(TypeError, match='split it first'):
        Vocabulary('dog,cat')


def test_a_model_without_vocabulary_says_how_to_set_one():
    assert issubclass(NoVocabularyError, RuntimeError)
    model = OpenVocabMaskSegmentor.__new__(OpenVocabMaskSegmentor)
    model._vocabulary = None
    with pytest.raises(NoVocabularyError, match='set_vocabulary'):
        model.require_vocabulary()

"""The classes a model names, as a value: things first, then stuff."""
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Tuple


class NoVocabularyError(RuntimeError):
    """A model was asked to classify before it was given class names."""


def _clean(names: Iterable[str], kind: str) -> Tuple[str, ...]:
    if isinstance(names, str):
        raise TypeError(f'{kind} must be a sequence of class names, not the string {names!r}; '
                        f'split it first, e.g. {names.split(",")!r}')
    cleaned = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f'{kind} must hold strings, got {name!r}')
        if not name.strip():
            raise ValueError(f'{kind} holds an empty class name: {list(names)!r}')
        cleaned.append(name.strip())
    return tuple(cleaned)


@dataclass(frozen=True)
class Vocabulary:
    """An ordered, validated set of class names. Labels index ``things + stuff``.

    Things are countable (instances, panoptic "things"); stuff is amorphous (panoptic
    "stuff"). A model without a thing/stuff notion uses ``things`` only.

    Raises:
        ValueError: empty vocabulary, an empty name or a repeated name.
    """

    things: Tuple[str, ...] = ()
    stuff: Tuple[str, ...] = ()

    def __post_init__(self):
        things, stuff = _clean(self.things, 'things'), _clean(self.stuff, 'stuff')
        names = things + stuff
        if not names:
            raise ValueError('the vocabulary is empty: give at least one class name')
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f'the vocabulary repeats class names {repeated}; each name once')
        object.__setattr__(self, 'things', things)
        object.__setattr__(self, 'stuff', stuff)

    @classmethod
    def from_metainfo(cls, metainfo: Mapping) -> 'Vocabulary':
        """A dataset's ``thing_classes`` / ``stuff_classes`` (or just ``classes``)."""
        if 'thing_classes' in metainfo or 'stuff_classes' in metainfo:
            return cls(tuple(metainfo.get('thing_classes', ())),
                       tuple(metainfo.get('stuff_classes', ())))
        return cls(tuple(metainfo['classes']))

    @property
    def names(self) -> Tuple[str, ...]:
        """All class names, things first; label ``i`` is ``names[i]``."""
        return self.things + self.stuff

    @property
    def num_things(self) -> int:
        return len(self.things)

    @property
    def num_stuff(self) -> int:
        return len(self.stuff)

    def __len__(self) -> int:
        return len(self.things) + len(self.stuff)

    def is_thing(self, label: int) -> bool:
        return 0 <= label < len(self.things)

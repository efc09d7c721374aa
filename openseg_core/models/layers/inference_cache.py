"""Tensors a layer derives from its parameters for inference, kept between calls."""
from typing import Callable, Hashable, Sequence

from torch import Tensor, nn


class InferenceCache:
    """A module's tensors derived from its parameters and buffers (a weight in oneDNN's
    layout, a convolution weight with its batch norm folded in), made once and remade when a
    source changes in place (an optimiser step, ``load_state_dict``: torch's version counter)
    or moves (``.to()``).

    Never pickled or deep-copied: a saved or copied module starts empty and derives again.
    """

    def __init__(self):
        self._entries = {}

    def get(self, name: Hashable, sources: Sequence[Tensor], make: Callable[[], Tensor]):
        """The tensor ``make()`` gave for the current ``sources``, calling it again when one
        of them has changed since."""
        key = tuple((s.data_ptr(), s._version) for s in sources)
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            entry = self._entries[name] = (key, make())
        return entry[1]

    def __getstate__(self):
        return {'_entries': {}}

    def __deepcopy__(self, memo):
        return InferenceCache()


def inference_cache(module: nn.Module) -> InferenceCache:
    """``module``'s :class:`InferenceCache`, made on first use (the converted layers are
    swapped classes whose ``__init__`` did not run)."""
    cache = module.__dict__.get('_inference_cache')
    if cache is None:
        cache = module.__dict__['_inference_cache'] = InferenceCache()
    return cache

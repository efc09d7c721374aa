"""Resuming openseg's own checkpoints under ``torch.load(weights_only=True)``.

mmengine 0.10.7 pickles its message hub (``HistoryBuffer``, numpy scalars and arrays) into
``.pth`` files and predates torch's ``weights_only=True`` default, so ``--resume`` fails with
``Unsupported global``. Rather than switching the weights-only check off (arbitrary code
execution for a file someone else made), openseg (1) writes its buffers without the function
references mmengine adds to them (loading those would need ``getattr``, which no allow-list
should hold) and (2) allow-lists exactly the remaining types.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


class PortableHistoryBuffer(HistoryBuffer):
    """A ``HistoryBuffer`` that pickles its data only.

    mmengine's ``__getstate__`` adds the class-level statistics functions to every pickle;
    they are restored from the class on load anyway (``HistoryBuffer.__setstate__``).
    """

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def make_portable(checkpoint: dict) -> None:
    """Swap the message hub's buffers in ``checkpoint`` for :class:`PortableHistoryBuffer`."""
    scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
    for key, buffer in scalars.items():
        if isinstance(buffer, HistoryBuffer) and not isinstance(buffer, PortableHistoryBuffer):
            portable = PortableHistoryBuffer.__new__(PortableHistoryBuffer)
            portable.__dict__.update(PortableHistoryBuffer.__getstate__(buffer))
            scalars[key] = portable


def _numpy_types() -> list:
    core = getattr(np, '_core', None) or np.core
    types = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return types


def allow_openseg_checkpoint_types() -> None:
    """Register the types of openseg checkpoints as safe for ``weights_only`` loads.

    Idempotent. Called by openseg's tools before building the runner.
    """
    torch.serialization.add_safe_globals(
        [HistoryBuffer, PortableHistoryBuffer] + _numpy_types())

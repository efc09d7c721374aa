"""Resuming openseg's own checkpoints under ``torch.load(weights_only=True)``.

mmengine 0.10.7 pickles its message hub (``HistoryBuffer``, numpy scalars and arrays) into
``.pth`` files and predates torch's ``weights_only=True`` default, so ``--resume`` fails with
``Unsupported global``. Rather than ``weights_only=False`` (arbitrary code execution for a file
someone else made), the exact types mmengine's checkpoints hold are allow-listed.
"""
import numpy as np
import torch


def _numpy_types() -> list:
    types = [np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar]
    # numpy >= 1.25 pickles dtypes by their class (np.dtypes.Float64DType...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return types


def allow_openseg_checkpoint_types() -> None:
    """Register the types of mmengine/openseg checkpoints as safe for ``weights_only`` loads.

    Idempotent. Called by openseg's tools before building the runner.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.config.config import ConfigDict
    torch.serialization.add_safe_globals([HistoryBuffer, ConfigDict] + _numpy_types())

"""The CPU allocator's policy for freed memory, and the peak memory of one step (for
``tools/benchmark.py`` and the plugins' benchmark suites)."""
import ctypes
import ctypes.util
import functools
import resource
from typing import Callable

import torch


def rss_mb(field: str = 'VmRSS') -> float:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...) in MB (Linux)."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise OSError(f'{field} not in /proc/self/status')


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX


@functools.lru_cache(maxsize=None)
def _libc():
    """The C library, looked up once (``find_library`` runs ``ldconfig``)."""
    return ctypes.CDLL(ctypes.util.find_library('c'))


def _call_libc(function: str, *args) -> bool:
    """Call a glibc allocator function; whether it said it succeeded (False where there is no
    glibc)."""
    try:
        return getattr(_libc(), function)(*args) == 1
    except (OSError, AttributeError, TypeError):
        return False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for the next allocations instead of handing it back to
    the system: no block is mapped on its own (``M_MMAP_MAX`` 0), and the free top of the heap
    is trimmed only beyond 2 GiB. Returns whether glibc took both settings.

    By default glibc maps every block over its mapping threshold (which grows to 32 MiB) on
    its own and unmaps it when freed, so each large tensor of a step (a batch's feature maps,
    the deformable attention's samples, their gradients) is page-faulted in afresh: on a
    2-core Zen 3 a new 106 MB tensor costs about 30 ms of faults before any arithmetic. Kept,
    a training step reuses the last step's pages. A Mask2Former-R50 training step at
    512 x 512 (batch 2, 2 cores): openseg 12.95 -> 10.32 s, mmdet's 18.09 -> 11.64 s (medians
    of 5 steps, docs/reference_model.md). The resident set stays at the peak of the working
    memory, as a GPU caching allocator's does.

    ``tools/train.py`` and ``tools/test.py`` call it unless the config sets
    ``env_cfg.keep_freed_memory=False``; forked data-loader workers inherit it.
    """
    return (_call_libc('mallopt', _M_MMAP_MAX, 0)
            and _call_libc('mallopt', _M_TRIM_THRESHOLD, 2**31 - 1))


def return_large_frees() -> None:
    """Make glibc hand freed blocks of 128 KiB or more back to the system at once, so that
    the resident set follows live memory (undoing :func:`keep_freed_memory`). By default it
    keeps them for reuse, and a second model's working memory would hide in the first one's
    pages. Call it after timing: mapping every large tensor afresh costs page faults."""
    _call_libc('mallopt', _M_MMAP_MAX, _GLIBC_MMAP_MAX)
    _call_libc('mallopt', _M_TRIM_THRESHOLD, 128 * 1024)
    _call_libc('mallopt', _M_MMAP_THRESHOLD, 128 * 1024)


def _release_free_heap() -> None:
    """Give glibc's free heap pages back to the system (``malloc_trim``): a step whose
    working memory fits in pages freed earlier would otherwise not raise the resident set."""
    _call_libc('malloc_trim', 0)


def peak_step_memory_mb(step: Callable[[], object], device: str) -> float:
    """Memory in use at the peak of one ``step()`` above what was in use before it.

    CUDA: the allocator's peak. CPU (Linux): the process's resident set, its high-water mark
    reset through ``/proc/self/clear_refs`` (call :func:`return_large_frees` first);
    elsewhere the process's lifetime peak.
    """
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:
        _release_free_heap()
        before = rss_mb('VmRSS')
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')  # resets VmHWM to the current resident set
        step()
        return rss_mb('VmHWM') - before
    except OSError:
        step()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

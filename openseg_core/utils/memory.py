"""Peak memory of one step, for ``tools/benchmark.py`` and the plugins' benchmark suites."""
import ctypes
import ctypes.util
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


def _call_libc(function: str, *args) -> None:
    """Call a glibc allocator function; nothing where there is no glibc."""
    try:
        getattr(ctypes.CDLL(ctypes.util.find_library('c')), function)(*args)
    except (OSError, AttributeError, TypeError):
        pass


def return_large_frees() -> None:
    """Make glibc hand freed blocks of 128 KiB or more back to the system at once, so that
    the resident set follows live memory. By default it keeps them for reuse, and a second
    model's working memory would hide in the first one's pages. Call it after timing:
    mapping every large tensor afresh costs page faults."""
    _call_libc('mallopt', -3, 128 * 1024)  # M_MMAP_THRESHOLD


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

"""The CPU allocator's policy for freed memory (``utils/memory.py``, ``engine/cli.py``)."""
import subprocess
import sys
import textwrap

import pytest

# In a fresh interpreter: the policy is process-wide and glibc's, and the test worker's own
# allocations would blur the count. Prints the page faults of five 64 MiB tensors made and
# freed in turn, under glibc's default policy, with keeping turned off by the config, then on.
_SCRIPT = textwrap.dedent('''
    import resource
    import torch
    from mmengine.config import Config
    from openseg_core.engine.cli import configure_allocator

    def faults():
        torch.ones(2**24)  # the first one may fault whatever the policy
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.ones(2**24)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    default = faults()
    configure_allocator(Config(dict(env_cfg=dict(keep_freed_memory=False))))
    off = faults()
    configure_allocator(Config(dict(env_cfg=dict())))
    print(default, off, faults())
''')


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc and its page faults')
def test_tools_keep_freed_memory_unless_the_config_says_not_to():
    out = subprocess.run([sys.executable, '-c', _SCRIPT], capture_output=True, text=True,
                         check=True).stdout
    default, off, kept = map(int, out.split())
    tensor_pages = 2**26 // 4096  # at 4 KiB pages
    # Released, each of the five tensors faults all its pages in; kept, the heap grows at
    # most once more.
    assert default > 4 * tensor_pages and off > 4 * tensor_pages
    assert kept <= 1.1 * tensor_pages

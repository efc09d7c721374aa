"""tools/benchmark.py times openseg and mmdet's Mask2Former of the same size in one process."""
import re

from openseg_core.testing import (TINY_CONFIG, assert_one_line_error, run_tool,
                                  run_tool_in_process)


def test_benchmark_reports_latency_memory_and_ratio_against_mmdet():
    result = run_tool(['benchmark.py', TINY_CONFIG, '--size', 64, '--iters', 2,
                       '--warmup', 1, '--train', '--batch-size', 1, '--compare-mmdet',
                       '--keep-freed-memory'])
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # The allocator's policy moves both models' times (page faults): say which ran.
    assert "freed memory kept for reuse (as openseg's tools)" in out
    for name in ('openseg', 'mmdet Mask2Former'):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + ':'))
        assert re.search(r'[\d.]+ ms/image +[\d.]+ images/s +peak +\d+ MB \(weights \d+ MB\) +'
                         r'train [\d.]+ it/s \(batch 1\), peak \d+ MB', line), line
    # Figures from AVX2 and AVX-512 machines differ (openseg picks routes by it): say which.
    assert re.search(r'device cpu \(\w+ kernels, \d+ threads\)', out), out
    assert re.search(r'latency ratio openseg / mmdet: \d+\.\d\d', out)
    assert re.search(r'training speed ratio openseg / mmdet \(it/s\): \d+\.\d\d', out)
    # mmengine's per-parameter initialisation log would bury the figures.
    assert 'The value is the same before and after' not in out + result.stderr


def test_unknown_suite_or_option_is_one_line_error():
    result = run_tool_in_process(['benchmark.py', TINY_CONFIG, '--suite', 'nope.sweep'])
    assert_one_line_error(result, 'benchmark.py', "no benchmark suite 'nope.sweep'")
    # Without a suite, an option the tool does not know is a usage error, not ignored.
    result = run_tool_in_process(['benchmark.py', TINY_CONFIG, '--sizes', '64'])
    assert result.returncode == 2 and 'unrecognized arguments: --sizes' in result.stderr
    # An option that changes nothing without another is refused, not silently ignored.
    result = run_tool_in_process(['benchmark.py', TINY_CONFIG, '--mmdet-fast-layers'])
    assert result.returncode == 2 and 'add --compare-mmdet' in result.stderr


def test_inference_figures_after_training_are_of_an_inference_step():
    """A trained text tower's vocabulary embeddings are re-encoded after training; the
    inference FLOPs must not count that re-encoding."""
    def flops(*extra):
        result = run_tool(['benchmark.py', 'xdecoder::xdecoder_tiny_shapes_mixed.py', '--size',
                           64, '--iters', 2, '--warmup', 1, '--batch-size', 1, *extra])
        assert result.returncode == 0, result.stderr[-3000:]
        return re.search(r'openseg: +([\d.]+) GFLOP/image', result.stdout).group(1)

    assert flops('--train') == flops()

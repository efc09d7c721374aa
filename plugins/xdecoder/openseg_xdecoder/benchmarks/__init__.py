"""Benchmark suites of the X-Decoder plugin (``tools/benchmark.py CONFIG --suite NAME``)."""

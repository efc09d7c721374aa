"""Benchmarks of the APE plugin (``tools/benchmark.py CONFIG --suite ape.<name>``)."""

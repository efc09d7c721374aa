"""ODISE benchmarks (tools/benchmark.py CONFIG --suite odise.<name>)."""

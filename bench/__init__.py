"""Benchmarks: tierwatch beside the exporters it replaces, at scale, and where its time goes.

`bench/run` (or `make bench`) runs them all; `bench/run --quick` is the small variant that
`tests/bench/test_bench_smoke.py` runs. docs/benchmarks.md quotes the figures.
"""

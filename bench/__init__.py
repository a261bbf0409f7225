"""Benchmarks run from the repository root (``python -m bench.detection``); not part of the installed package."""

"""Benchmarks of the hot paths, runnable on any machine through ``exposure bench``.

Each benchmark is a plain function returning a dataclass result, so the CLI only formats it
and a test can run it small.
"""

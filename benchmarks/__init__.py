"""Benchmarks of the hot paths, runnable on any machine through ``exposure bench``.

Each benchmark is a plain function returning a dataclass result, so the CLI
(:mod:`benchmarks.cli`) only formats it and a test can run it small.

This package is not part of the product: nothing in ``exposure``, ``keyserver``,
``verification`` or ``crypto`` imports it (``tests/unit/test_package_boundaries.py``
checks), and ``exposure bench`` imports :mod:`benchmarks.cli` only when it is called
(:mod:`exposure.cli.lazy`). The benchmarks import the product freely.
"""

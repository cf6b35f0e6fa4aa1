"""Benchmarks: each prints a table and writes JSON to bench/results."""

import core  # noqa: F401  (first: keeps the libraries it imports off the Hub, core/offline.py)

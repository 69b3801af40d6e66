"""Benchmarks for `jobs` (`make bench`); not part of the test suite."""

from __future__ import annotations

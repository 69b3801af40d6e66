"""Task results: what a job returned or why it failed, stored in PostgreSQL
(`store`), interpreted as a `State` (`state`), recorded by a worker middleware
(`middleware`) and read through the optional Redis cache (`cache`).
"""

from __future__ import annotations

from jobs.results.state import Result, State
from jobs.results.store import get_result, get_result_async, store_result, store_result_async

__all__ = [
    "Result",
    "State",
    "get_result",
    "get_result_async",
    "store_result",
    "store_result_async",
]

"""Retrying transient failures: exponential backoff with jitter and a cap.

procrastinate's own `RetryStrategy` has neither jitter nor a cap; this small
`BaseRetryStrategy` adds both. Its limits are read when a job fails (through a
callable, so settings stay at the edge and a changed setting needs no reimport).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job


@dataclass(frozen=True)
class Backoff:
    """``max_attempts`` runs in all; the wait before run ``n+1`` is about
    ``base_delay * 2**(n-1)`` seconds, capped at ``max_delay``, with jitter."""

    max_attempts: int
    base_delay: float
    max_delay: float

    def is_final(self, previous_attempts: int) -> bool:
        """Whether the run after ``previous_attempts`` failed runs is the last one."""
        return previous_attempts + 1 >= self.max_attempts

    def window(self) -> float:
        """Seconds the retries of a job can span at most: every capped delay between
        its ``max_attempts`` runs, jitter aside."""
        return sum(self._ceiling(n) for n in range(self.max_attempts - 1))

    def _ceiling(self, previous_attempts: int) -> float:
        return min(self.max_delay, self.base_delay * 2.0 ** min(previous_attempts, 60))

    def delay(self, previous_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after run number ``previous_attempts + 1`` failed.

        "Equal jitter": a random point in the upper half of the capped
        exponential delay, so retries of many jobs spread out but still grow.
        """
        ceiling = self._ceiling(previous_attempts)
        return (rng or random).uniform(ceiling / 2, ceiling)


class BackoffRetry(BaseRetryStrategy):
    """Retry ``retry_exceptions`` with `Backoff`; anything else fails the job at once."""

    def __init__(
        self,
        backoff: Callable[[], Backoff],
        retry_exceptions: tuple[type[BaseException], ...],
    ) -> None:
        self.backoff = backoff
        self.retry_exceptions = retry_exceptions

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if not isinstance(exception, self.retry_exceptions):
            return None
        backoff = self.backoff()
        if backoff.is_final(job.attempts):
            return None
        retry_at = datetime.now(UTC) + timedelta(seconds=backoff.delay(job.attempts))
        return RetryDecision(retry_at=retry_at)

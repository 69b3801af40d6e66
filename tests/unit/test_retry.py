"""Backoff: exponential, jittered, capped; the retry decision a delivery job gets."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from procrastinate.jobs import Job

from jobs.tasks.delivery import retry as delivery_retry
from jobs.worker.retry import Backoff, BackoffRetry

BACKOFF = Backoff(max_attempts=5, base_delay=10, max_delay=60)


def _job(attempts: int) -> Job:
    return Job(id=1, queue="email", lock=None, queueing_lock=None, task_name="t", attempts=attempts)


def test_delays_double_with_jitter_and_stop_at_the_cap() -> None:
    rng = random.Random(7)
    for attempts, ceiling in [(0, 10), (1, 20), (2, 40), (3, 60), (9, 60), (500, 60)]:
        delays = [BACKOFF.delay(attempts, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len({round(d, 3) for d in delays}) > 100  # jittered, not one fixed value


def test_the_window_is_every_capped_delay_between_the_runs() -> None:
    assert BACKOFF.window() == 10 + 20 + 40 + 60  # 5 runs, 4 waits
    assert Backoff(max_attempts=1, base_delay=10, max_delay=60).window() == 0
    defaults = Backoff(max_attempts=10, base_delay=10, max_delay=1800)
    assert defaults.window() == 10 * (2**8 - 1) + 1800  # about 72 minutes


def test_retries_transient_errors_until_the_last_attempt() -> None:
    strategy = BackoffRetry(lambda: BACKOFF, (OSError,))
    decision = strategy.get_retry_decision(exception=ConnectionResetError(), job=_job(2))
    assert decision is not None
    assert decision.retry_at is not None
    wait = (decision.retry_at - datetime.now(UTC)).total_seconds()
    assert 15 <= wait <= 40
    assert not BACKOFF.is_final(3)
    assert BACKOFF.is_final(4)  # the 5th run is the last
    assert strategy.get_retry_decision(exception=OSError(), job=_job(4)) is None
    assert strategy.get_retry_decision(exception=KeyError("x"), job=_job(0)) is None


def test_delivery_retries_timeouts_and_shutdown_aborts() -> None:
    for exc in (TimeoutError(), asyncio.CancelledError(), ConnectionResetError()):
        assert delivery_retry.get_retry_decision(exception=exc, job=_job(0)) is not None

"""The global send budget in Postgres: shared by limiters, processes and machines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from jobs.db import async_engine, session_factory
from jobs.dev.sink import Sink
from jobs.mail.enqueue import defer_delivery
from jobs.mail.ratelimit import RateLimiter
from jobs.models import EmailMessage
from jobs.tasks import BULK_PRIORITY
from tests.conftest import count, faults


async def test_reservations_follow_each_other_at_the_rate(database_url: str) -> None:
    engine = async_engine(database_url)
    one, two = RateLimiter(engine, 10, "smtp:1"), RateLimiter(engine, 10, "smtp:1")
    first = await one.reserve(10)  # slots 0.0 .. 0.9 s
    second = await two.reserve(10)  # another limiter (worker): the next second
    assert second.start - first.start >= 0.95
    other = await RateLimiter(engine, 10, "smtp:2").reserve(10)  # another server: its own budget
    assert other.start < second.start
    assert count(database_url, "SELECT count(*) FROM mail_rate_limits") == 2


async def test_no_limit_reserves_nothing(database_url: str) -> None:
    slots = await RateLimiter(async_engine(database_url), None, "smtp:1").reserve(100)
    await slots.wait(99)
    assert count(database_url, "SELECT count(*) FROM mail_rate_limits") == 0


def _jobs(url: str, jobs: int, per_job: int) -> None:
    with session_factory(url)() as session, session.begin():
        for j in range(jobs):
            rows = [
                EmailMessage(
                    idempotency_key=f"rate:{j}:{i}",
                    kind="test",
                    to_address=f"u{j}x{i}@example.com",
                    template="welcome",
                    context={"username": "u"},
                )
                for i in range(per_job)
            ]
            session.add_all(rows)
            session.flush()
            defer_delivery(session, [r.id for r in rows], priority=BULK_PRIORITY)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_worker_processes_share_one_limit(
    database_url: str, smtp: Sink, tmp_path: Path
) -> None:
    env = {**os.environ, "MAIL_RATE_LIMIT": "20"}
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    outputs = [log.open("w") for log in logs]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "worker", "--queues", "email", "--concurrency", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
        for output in outputs
    ]
    try:
        _wait_for(
            lambda: count(database_url, "SELECT count(*) FROM procrastinate_workers") == 2,
            60,
            "both workers to start",
        )
        _jobs(database_url, jobs=6, per_job=10)  # both workers are listening: they share them
        _wait_for(lambda: len(smtp.messages) >= 60, 60, "60 messages")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        for output in outputs:
            output.close()
    times = faults(smtp).times
    assert len(times) == 60
    # 20/s overall: slot 59 is 2.95 s after slot 0, however many processes send.
    assert times[-1] - times[0] >= 2.5
    sent_by = [sum(int(n) for n in re.findall(r"'sent': (\d+)", log.read_text())) for log in logs]
    assert sum(sent_by) == 60
    assert all(sent > 0 for sent in sent_by), sent_by  # both processes took part


def test_a_domain_budget_holds_across_two_worker_processes(
    database_url: str, smtp: Sink, tmp_path: Path
) -> None:
    env = {**os.environ, "MAIL_DOMAIN_RATE_LIMITS": "slow.example=5"}
    logs = [(tmp_path / f"worker{n}.log").open("w") for n in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "worker", "--queues", "email", "--concurrency", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for log in logs
    ]
    try:
        _wait_for(
            lambda: count(database_url, "SELECT count(*) FROM procrastinate_workers") == 2,
            60,
            "both workers to start",
        )
        with session_factory(database_url)() as session, session.begin():
            for j in range(4):  # 4 jobs of 5: both workers take some
                rows = [
                    EmailMessage(
                        idempotency_key=f"domain:{j}:{i}",
                        kind="test",
                        to_address=f"u{j}x{i}@slow.example",
                        template="welcome",
                        context={"username": "u"},
                    )
                    for i in range(5)
                ]
                session.add_all(rows)
                session.flush()
                defer_delivery(session, [r.id for r in rows], priority=BULK_PRIORITY)
        _wait_for(lambda: len(smtp.messages) >= 20, 60, "20 messages")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        for log in logs:
            log.close()
    times = faults(smtp).times
    assert len(times) == 20
    # 5/s for the domain: slot 19 is 3.8 s after slot 0, however many processes send.
    assert times[-1] - times[0] >= 3.3

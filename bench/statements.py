"""Statements and transactions per delivered transactional email, counted, not timed.

    python -m bench.statements [--emails N]

Signs N users up (one `register_user` transaction each), then runs a real
worker in this process until the queue is empty, counting every statement
psycopg sends (the worker's procrastinate connections and the delivery's
SQLAlchemy sessions alike) and every COMMIT, less what a worker that starts
and stops on an empty queue sends (registering, LISTEN, heartbeats). Twice: one email alone (what an
idle worker does per sign-up) and N queued at once (a burst).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bench.database import fresh_database
from bench.transactional import register
from jobs.dev.sink import Sink
from jobs.settings import get_settings

counts: Counter[str] = Counter()


def _counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return await original(self, *args, **kwargs)

    return wrapper


@contextmanager
def counting() -> Iterator[Counter[str]]:
    """Count AsyncCursor.execute/executemany and AsyncConnection.commit calls."""
    patched = [
        (psycopg.AsyncCursor, "execute", "statements"),
        (psycopg.AsyncCursor, "executemany", "statements"),
        (psycopg.AsyncConnection, "commit", "commits"),
    ]
    saved = [(cls, attr, getattr(cls, attr)) for cls, attr, _ in patched]
    for cls, attr, name in patched:
        setattr(cls, attr, _counting(name, getattr(cls, attr)))
    counts.clear()
    try:
        yield counts
    finally:
        for cls, attr, original in saved:
            setattr(cls, attr, original)


def _drain() -> None:
    from jobs.worker.run import run_worker

    asyncio.run(run_worker(queues=["email"], concurrency=4, drain=True))


def _counted_drain() -> Counter[str]:
    with counting() as seen:
        _drain()
    return Counter(seen)


def measure(url: str, emails: int) -> dict[str, float]:
    """Per email, less what starting and stopping a worker on an empty queue costs."""
    idle = _counted_drain()
    register(url, emails, f"st-{uuid.uuid4().hex[:8]}")
    busy = _counted_drain()
    return {name: (busy[name] - idle[name]) / emails for name in ("statements", "commits")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=1000)
    args = parser.parse_args()
    with Sink() as sink, fresh_database("jobs_bench_statements") as url:
        os.environ.update(
            MAIL_SERVER=sink.host,
            MAIL_PORT=str(sink.port),
            MAIL_RATE_LIMIT="",
            REDIS_URL="",
            PROMOTION_SCHEDULE_ENABLED="false",
        )
        get_settings.cache_clear()
        alone = measure(url, 1)
        burst = measure(url, args.emails)
        print("worker side, per delivered email (statements include the job fetch and finish):")
        print(
            f"  one email alone: {alone['statements']:.1f} statements,"
            f" {alone['commits']:.1f} commits"
        )
        print(
            f"  {args.emails} queued at once: {burst['statements']:.2f} statements,"
            f" {burst['commits']:.2f} commits"
        )
        print(f"  sink received {len(sink.messages)} messages")


if __name__ == "__main__":
    main()

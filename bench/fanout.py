"""Scenario 2: the daily promotion fanned out to every user.

The real code path (`jobs.promotions.promote.send_promotions`) in a child process, so
its peak RSS is the fan-out's own: seconds until every ledger row and every
delivery job of the campaign is committed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
from datetime import UTC, datetime

import psycopg

from bench.stats import median

CHUNK = 500

RESET = (
    "TRUNCATE email_messages, email_accepted, promotion_runs, job_results, procrastinate_events,"
    " procrastinate_periodic_defers, procrastinate_jobs RESTART IDENTITY CASCADE"
)


def reset(url: str) -> None:
    """Forget every email, run and job (users and campaigns stay)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RESET)
        conn.execute("VACUUM ANALYZE email_messages")


async def fan_out(url: str) -> float:
    from jobs.db import async_session_factory, dispose_engines
    from jobs.promotions.fanout import PromotionConfig
    from jobs.promotions.promote import send_promotions

    config = PromotionConfig(
        chunk_size=CHUNK,
        frontend_url="https://shop.example.com",
        unsubscribe_url="https://shop.example.com/unsubscribe",
        unsubscribe_mailto=None,
        key=os.urandom(32),
    )
    try:
        started = time.perf_counter()
        await send_promotions(async_session_factory(url), period=datetime.now(UTC), config=config)
        return time.perf_counter() - started
    finally:
        await dispose_engines()


def _child(url: str) -> tuple[float, float]:
    seconds = asyncio.run(fan_out(url))
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fan_out_in_child(url: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one fan-out in a fresh process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        seconds, rss = pool.apply(_child, (url,))
    return float(seconds), float(rss)


def count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def run(url: str, *, users: int, repeats: int) -> dict[str, float]:
    seconds: list[float] = []
    rss: list[float] = []
    for _ in range(repeats):
        reset(url)
        took, peak = fan_out_in_child(url)
        rows = count(url, "SELECT count(*) FROM email_messages")
        if rows != users:
            raise RuntimeError(f"fan-out queued {rows} emails for {users} users")
        seconds.append(took)
        rss.append(peak)
    return {
        "seconds": median(seconds),
        "per_second": users / median(seconds),
        "peak_rss_mib": max(rss),
        "jobs": count(url, "SELECT count(*) FROM procrastinate_jobs"),
    }

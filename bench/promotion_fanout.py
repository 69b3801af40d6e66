"""Fan-out speed of the daily promotion: N users -> ledger rows + delivery jobs, committed.

    .venv/bin/python bench/promotion_fanout.py [--users 100000] [--chunk 500] [--deliver]

Uses a scratch database on the server of DATABASE_URL (or the embedded one),
dropped at the end. The target: 100,000 users fanned out in at most 10 s
(>= 10,000 recipients/s). ``--deliver`` also runs a worker until the campaign
is delivered to a local SMTP sink and reports that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg

from jobs.db import async_session_factory, database_url, dispose_engines
from jobs.fanout import PromotionConfig
from jobs.promotion import send_promotions
from jobs.schema import migrate
from jobs.settings import get_settings
from jobs.sink import Sink


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _scalar(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


async def _fan_out(url: str, chunk: int) -> float:
    config = PromotionConfig(
        chunk_size=chunk,
        frontend_url="https://shop.example.com",
        unsubscribe_url="https://shop.example.com/unsubscribe",
        unsubscribe_mailto="unsubscribe@example.com",
        key=os.urandom(32),
    )
    sessions = async_session_factory(url)
    try:
        started = time.perf_counter()
        await send_promotions(sessions, period=datetime.now(UTC), config=config)
        return time.perf_counter() - started
    finally:
        await dispose_engines()


async def _deliver(concurrency: int) -> float:
    from jobs.worker import run_worker

    started = time.perf_counter()
    await run_worker(drain=True, concurrency=concurrency)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--deliver", action="store_true", help="also deliver to a local sink")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    server = database_url(get_settings())
    name = f"jobs_bench_{uuid.uuid4().hex[:8]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    url = urlsplit(server)._replace(path=f"/{name}").geturl()
    try:
        migrate(url)
        _admin(
            url,
            "INSERT INTO users (email, username) SELECT 'user' || g || '@example.com',"
            f" 'user' || g FROM generate_series(1, {args.users}) g",
        )
        _admin(url, "VACUUM ANALYZE users")
        seconds = asyncio.run(_fan_out(url, args.chunk))
        rows = _scalar(url, "SELECT count(*) FROM email_messages")
        jobs = _scalar(url, "SELECT count(*) FROM procrastinate_jobs")
        assert rows == args.users, (rows, args.users)
        print(
            f"fan-out: {args.users:,} users, chunk {args.chunk}: {rows:,} ledger rows and "
            f"{jobs:,} delivery jobs committed in {seconds:.2f} s = {rows / seconds:,.0f} "
            "recipients/s"
        )
        if args.deliver:
            with Sink() as sink:
                os.environ.update(DATABASE_URL=url, MAIL_SERVER=sink.host, MAIL_PORT=str(sink.port))
                get_settings.cache_clear()
                seconds = asyncio.run(_deliver(args.concurrency))
                delivered = len(sink.messages)
            print(
                f"delivery: {delivered:,} emails to a local sink in {seconds:.1f} s = "
                f"{delivered / seconds:,.0f}/s (concurrency {args.concurrency})"
            )
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

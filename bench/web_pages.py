"""How the dashboard's pages answer with millions of old jobs.

Seeds the database of bench/status_queries.py (N finished jobs over 30 days, a
backlog, failed jobs, one ledger row per job), then requests every dashboard page
through the ASGI app (httpx, no network) and prints the median and worst of a few
requests each. Needs DATABASE_URL (a server where it may create and drop the
database ``jobs_bench_status``).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.web_pages --jobs 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx
import psycopg

from bench.status_queries import NAME, seeded
from jobs.db import dispose_engines, with_database
from jobs.settings import load_settings
from jobs.web import create_app

REPEAT = 5


def _pages(jobs: int) -> list[str]:
    middle = jobs // 2
    return [
        "/dashboard/",
        "/dashboard/jobs",
        "/dashboard/jobs?status=failed",
        "/dashboard/jobs?status=succeeded",
        "/dashboard/jobs?queue=default",
        "/dashboard/jobs?task=maintenance.recover_stalled",
        "/dashboard/jobs?queue=default&status=failed",
        "/dashboard/jobs?status=todo&queue=email",
        "/dashboard/jobs?age=1h",
        "/dashboard/jobs?age=7d&status=failed",
        f"/dashboard/jobs?before={middle}",
        f"/dashboard/jobs?status=succeeded&before={middle}",
        f"/dashboard/jobs/{middle}",
        f"/dashboard/emails?to=u{middle}@example.com",
        "/dashboard/emails",
        "/dashboard/emails?status=sent",
        "/dashboard/emails?kind=welcome",
        "/dashboard/emails?kind=password_reset",
        "/dashboard/emails?status=failed",
        "/dashboard/emails?campaign=default",
        f"/dashboard/emails?before={middle}",
        "/dashboard/campaigns",
    ]


async def _measure(url: str, jobs: int) -> None:
    settings = load_settings(
        DATABASE_URL=url, SECRET_KEY="bench-secret-key-0123456789", PROMOTION_SCHEDULE_ENABLED=False
    )
    app = create_app(settings, anonymous=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        print(f"{'page':<56} {'median':>8} {'worst':>8}")
        for page in _pages(jobs):
            times = []
            for _ in range(REPEAT + 1):
                started = time.perf_counter()
                response = await client.get(page)
                times.append(1000 * (time.perf_counter() - started))
                assert response.status_code == 200, (page, response.status_code)
            times = times[1:]  # the first one warms the connection pool
            print(f"{page:<56} {statistics.median(times):6.1f}ms {max(times):6.1f}ms")
    await dispose_engines()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--reuse", action="store_true", help="use the seeded database as it is")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    args = parser.parse_args()
    server = load_settings(DATABASE_URL=os.environ["DATABASE_URL"]).database_url
    assert server is not None
    url = with_database(server, NAME) if args.reuse else seeded(server, args.jobs, args.backlog)
    asyncio.run(_measure(url, args.jobs))
    if not args.keep:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()

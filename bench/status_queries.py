"""How `jobs status`, `/metrics` and retention behave with millions of old jobs.

Seeds a database with N finished jobs spread over 30 days (3 events each), a
backlog, failed jobs and an email ledger, then times each monitoring query and
prints the plan's top lines. Needs DATABASE_URL (a server where it may create
and drop the database ``jobs_bench_status``).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/status_queries.py --jobs 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text

from jobs.db import (
    async_session_factory,
    dispose_engines,
    queue_sql,
    session_factory,
    with_database,
)
from jobs.db.migrations import migrate
from jobs.ops import queries as monitor
from jobs.ops import retention
from jobs.settings import load_settings

NAME = "jobs_bench_status"

SEED = """
SET session_replication_role = replica;  -- no triggers: seed fast, events written below
INSERT INTO procrastinate_jobs (id, queue_name, task_name, status, args, attempts)
SELECT g, CASE WHEN g % 10 = 0 THEN 'default' ELSE 'email' END,
       CASE WHEN g % 10 = 0 THEN 'maintenance.recover_stalled' ELSE 'email.deliver' END,
       CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END::procrastinate_job_status,
       jsonb_build_object('message_ids', jsonb_build_array(g)), 1
  FROM generate_series(1, %(jobs)s) g;
INSERT INTO procrastinate_events (job_id, type, at)
SELECT g, t.type::procrastinate_job_event_type,
       now() - interval '30 days' * (1 - g::float8 / %(jobs)s) + t.offs
  FROM generate_series(1, %(jobs)s) g,
       (VALUES ('deferred', interval '0'), ('started', interval '1 second'),
               ('succeeded', interval '2 seconds')) AS t(type, offs);
UPDATE procrastinate_events SET type = 'failed'
 WHERE type = 'succeeded' AND job_id % 50 = 0;
SELECT setval('procrastinate_jobs_id_seq', %(jobs)s);
INSERT INTO email_messages (idempotency_key, kind, to_address, template, context, status,
                            created_at, sent_at)
SELECT 'bench:' || g, 'welcome', 'u' || g || '@example.com', 'welcome',
       '{"username": "u"}', 'sent', now() - interval '60 days' * (1 - g::float8 / %(jobs)s), now()
  FROM generate_series(1, %(jobs)s) g;
SET session_replication_role = origin;
"""

BACKLOG = """
SELECT procrastinate_defer_jobs_v1(array_agg(
    ROW('email', 'email.deliver', 0, NULL, NULL, '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1))
  FROM generate_series(1, %(backlog)s);
"""


def seeded(server: str, jobs: int, backlog: int) -> str:
    """Create `NAME` anew on ``server``, migrate it, and fill it with ``jobs`` finished
    jobs and ``backlog`` waiting ones; its URL."""
    url = with_database(server, NAME)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {NAME}")
    migrate(url)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED.replace("%(jobs)s", str(int(jobs))))
        conn.execute(BACKLOG, {"backlog": backlog})
        conn.execute("VACUUM ANALYZE")
    print(f"seeded {jobs} finished jobs + {backlog} todo in {time.perf_counter() - started:.0f} s")
    return url


def _timed(label: str, run: Callable[[], object]) -> None:
    started = time.perf_counter()
    run()
    print(f"{label:<34} {1000 * (time.perf_counter() - started):8.1f} ms")


def _explain(url: str, label: str, query: str, params: dict[str, object]) -> None:
    with session_factory(url)() as session:
        plan = session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + query), params).scalars().all()
    print(f"--- {label}")
    for line in plan:
        if "Scan" in line or "Execution Time" in line:
            print("   ", line.strip()[:150])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    args = parser.parse_args()
    server = load_settings(DATABASE_URL=os.environ["DATABASE_URL"]).database_url
    assert server is not None
    url = seeded(server, args.jobs, args.backlog)

    sessions = session_factory(url)
    with sessions() as s:
        _timed("gauges (one /metrics scrape)", lambda: monitor.gauges(s, stalled_after=60))
        _timed("outcomes 1h/24h", lambda: monitor.outcomes(s))
        _timed("workers", lambda: monitor.workers(s, stalled_after=60))
        _timed("ledger", lambda: monitor.ledger(s))
    _explain(url, "gauges", str(queue_sql.GAUGES), {"stalled_after": 60})
    _explain(url, "outcomes", str(queue_sql.OUTCOMES), {})
    _explain(url, "ledger windows", str(monitor._LEDGER_WINDOWS), {})
    cutoff = datetime.now(UTC) - timedelta(days=7)
    params = {
        "cutoff": cutoff,
        "after_at": datetime.min.replace(tzinfo=UTC),
        "after_id": 0,
        "batch_size": 1000,
    }
    _explain(url, "retention batch (rolled back)", str(queue_sql.DELETE_FINISHED_JOBS), params)

    async def prune() -> dict[str, int]:
        return await retention.prune(
            async_session_factory(url), jobs_before=cutoff, contexts_before=cutoff
        )

    started = time.perf_counter()
    pruned = asyncio.run(prune())
    print(f"retention: {pruned} in {time.perf_counter() - started:.1f} s")
    asyncio.run(dispose_engines())
    if not args.keep:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()

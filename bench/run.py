"""`make bench`: every scenario, one run, written to bench/RESULTS.md.

    python -m bench.run [--quick] [--users N] [--repeats R] [--celery-repeats R]

PostgreSQL and Redis are the local ones (DATABASE_URL — else the embedded
server — and BENCH_REDIS_URL, default redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import burst, celery_run, delivery, fanout, latency, machine, signup, transactional
from bench.database import fresh_database, seed_users
from bench.report import write_report
from bench.sinks import start_sink

logger = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def main() -> None:
    parser = argparse.ArgumentParser(description="jobs benchmarks")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--users", type=int, help="campaign size (default 100000; quick 1000)")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3; quick 1)")
    parser.add_argument("--celery-repeats", type=int, help="runs of the Celery design")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections/worker")
    parser.add_argument(
        "--emails", type=int, help="transactional emails (default 10000; quick 1000)"
    )
    parser.add_argument("--burst-seconds", type=float, help="sign-up burst (default 30; quick 5)")
    parser.add_argument("--burst-rate", type=float, default=500.0, help="sign-ups/s in the burst")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    quick = args.quick
    users = args.users or (1000 if quick else 100_000)
    repeats = args.repeats or (1 if quick else 3)
    celery_repeats = args.celery_repeats or repeats
    emails = args.emails or (1000 if quick else 10_000)
    burst_seconds = args.burst_seconds or (5.0 if quick else 30.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s")
    for noisy in ("jobs", "procrastinate", "alembic", "pgserver", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    sink = start_sink()
    try:
        with fresh_database() as url:
            info = machine.describe(url)
            logger.info("1/7 signup transaction")
            results["signup"] = signup.run(
                url, transactions=400 if quick else 4000, repeats=repeats
            )
            seed_users(url, users)
            logger.info("2/7 fan-out of %d users", users)
            results["fanout"] = fanout.run(url, users=users, repeats=repeats)
            logger.info("3/7 delivery (and the raw ceiling), %d workers", args.workers)
            results["delivery"] = delivery.run(
                url,
                sink,
                users=users,
                repeats=repeats,
                workers=args.workers,
                connections=args.connections,
            )
            logger.info("4/7 the original Celery design")
            fanout.reset(url)
            results["celery"] = celery_run.run(
                url, sink, users=users, repeats=celery_repeats, processes=args.workers
            )
            logger.info("5/7 latency")
            fanout.reset(url)
            results["latency"] = latency.run(url, messages=50 if quick else 200)
            logger.info("6/7 transactional delivery, %d emails, vs Celery", emails)
            results["transactional"] = transactional.run(
                url,
                sink,
                emails=emails,
                repeats=repeats,
                workers=args.workers,
                connections=args.connections,
            )
            logger.info("7/7 sign-up burst, %g/s for %g s", args.burst_rate, burst_seconds)
            results["burst"] = burst.run(
                url,
                sink,
                rate=args.burst_rate,
                duration=burst_seconds,
                workers=args.workers,
                connections=args.connections,
            )
    finally:
        sink.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_report(
        args.output,
        results=results,
        info=info,
        settings={
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "users": users,
            "repeats": repeats,
            "celery_repeats": celery_repeats,
            "workers": args.workers,
            "connections": args.connections,
            "sink": sink.name,
            "latency_messages": 50 if quick else 200,
            "emails": emails,
            "burst_rate": args.burst_rate,
            "burst_seconds": burst_seconds,
            "minutes": (time.perf_counter() - started) / 60,
        },
    )
    logger.info("wrote %s", args.output)
    print(args.output.read_text())


if __name__ == "__main__":
    main()

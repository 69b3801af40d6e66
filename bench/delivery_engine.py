"""Delivery throughput: the queue vs a bare aiosmtplib loop, same sink, same run.

    DATABASE_URL=postgresql://... python bench/delivery_engine.py [N] [CONNECTIONS] [ROUNDS]

Modes (messages/second; best of ROUNDS, modes interleaved so machine noise hits all):
  raw-message  N pre-built EmailMessages over CONNECTIONS reused aiosmtplib
               connections with send_message (no queue, no database);
  raw-bytes    the same messages pre-serialized, sent with sendmail: the strict ceiling;
  queue        jobs of 500 ledger ids through a real worker: lock, render, send, record;
  original     the Celery design's shape: one job per email, one new SMTP connection
               per email (a bench-only task), on fewer messages.
The sink (aiosmtpd) runs in its own process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from multiprocessing.synchronize import Event
from urllib.parse import urlsplit

import aiosmtplib
import psycopg

from jobs.app import app

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
CONNECTIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
CHUNK = 500
ORIGINAL_N = min(N, 500)


def _sink(port: int, ready: Event, stop: Event) -> None:
    from jobs.sink import Sink

    with Sink(port=port):
        ready.set()
        stop.wait()


def _compose(row: tuple[int, str, str, str]) -> EmailMessage:
    from jobs.mail.message import build_message, message_id_for
    from jobs.mail.templates import render, search_path

    _, key, to, username = row
    rendered = render("welcome", {"username": username, "frontend_url": "http://x"}, search_path())
    return build_message(
        sender="noreply@example.com",
        sender_name="jobs",
        to=to,
        subject=rendered.subject or "",
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(key, "noreply@example.com"),
    )


@app.task(name="bench.original", queue="email")
async def original(key: str, to: str, username: str) -> None:
    """The Celery task this product replaces: everything in the job's arguments,
    render, one new SMTP connection for this one email, no ledger."""
    from jobs.settings import get_settings

    settings = get_settings()
    await aiosmtplib.send(
        _compose((0, key, to, username)),
        hostname=settings.MAIL_SERVER,
        port=settings.MAIL_PORT,
        start_tls=False,
    )


async def _raw(port: int, items: list[EmailMessage] | list[tuple[str, bytes]]) -> float:
    queue = iter(items)

    async def worker() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
            for item in queue:
                if isinstance(item, tuple):
                    await client.sendmail("noreply@example.com", [item[0]], item[1])
                else:
                    await client.send_message(item)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return time.perf_counter() - start


def _fill(url: str, n: int, chunk: int | None) -> None:
    """``n`` ledger rows; delivery jobs of ``chunk`` ids, or `original` jobs when None."""
    from procrastinate import SyncPsycopgConnector
    from procrastinate.manager import JobManager

    from jobs.email import delivery_job

    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE email_messages, procrastinate_jobs CASCADE")
        rows = conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template, context) "
            "SELECT 'bench:' || i, 'bench', 'user' || i || '@example.com', 'welcome', "
            "jsonb_build_object('username', 'user' || i) "
            "FROM generate_series(1, %s) i RETURNING id",
            (n,),
        )
        ids = [r[0] for r in rows]
        if chunk is None:
            job = original.configure().job
            jobs = [
                job.evolve(
                    task_kwargs={
                        "key": f"bench:{i}",
                        "to": f"user{i}@example.com",
                        "username": f"user{i}",
                    }
                )
                for i in range(1, n + 1)
            ]
        else:
            jobs = [delivery_job(ids[i : i + chunk], priority=0) for i in range(0, n, chunk)]
        JobManager(SyncPsycopgConnector()).batch_defer_jobs(jobs, conn)


async def _queue(url: str, n: int, chunk: int | None) -> float:
    from jobs.worker import run_worker

    _fill(url, n, chunk)
    start = time.perf_counter()
    await run_worker(drain=True, concurrency=10)
    elapsed = time.perf_counter() - start
    done = (
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        if chunk is None
        else "SELECT count(*) FROM email_messages WHERE status = 'sent'"
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(done).fetchone()  # type: ignore[arg-type]
    if row is None or row[0] != n:
        raise SystemExit(f"only {row} of {n} sent")
    return elapsed


def _measure(runs: dict[str, tuple[int, Callable[[], Awaitable[float]]]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for label, (n, run) in runs.items():
            rate = n / asyncio.run(run())  # type: ignore[arg-type]
            best[label] = max(best.get(label, 0.0), rate)
    return best


def main() -> None:
    server = os.environ["DATABASE_URL"]
    name = f"jobs_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = urlsplit(server)._replace(path=f"/{name}").geturl()
    from jobs.sink import free_port

    port = free_port()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    sink = multiprocessing.Process(target=_sink, args=(port, ready, stop))
    sink.start()
    ready.wait()
    env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(port)}
    os.environ.update(DATABASE_URL=url, MAIL_MAX_CONNECTIONS=str(CONNECTIONS), **env)
    try:
        from jobs.schema import migrate

        migrate(url)
        rows = [(i, f"bench:{i}", f"user{i}@example.com", f"user{i}") for i in range(N)]
        messages = [_compose(row) for row in rows]
        crlf = messages[0].policy.clone(linesep="\r\n")
        wire = [(str(m["To"]), m.as_bytes(policy=crlf)) for m in messages]
        best = _measure(
            {
                "raw-message": (N, lambda: _raw(port, messages)),
                "raw-bytes": (N, lambda: _raw(port, wire)),
                "queue": (N, lambda: _queue(url, N, CHUNK)),
                "original": (ORIGINAL_N, lambda: _queue(url, ORIGINAL_N, None)),
            }
        )
    finally:
        stop.set()
        sink.join()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    print(f"N={N} connections={CONNECTIONS} best of {ROUNDS} rounds")
    for label, rate in best.items():
        print(f"  {label:12s} {rate:8.0f} msg/s")
    print(f"  queue / raw-message = {best['queue'] / best['raw-message']:.0%}")
    print(f"  queue / raw-bytes   = {best['queue'] / best['raw-bytes']:.0%}")
    print(f"  queue / original    = {best['queue'] / best['original']:.1f}x")


if __name__ == "__main__":
    main()

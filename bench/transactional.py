"""Scenario 7: transactional delivery, one email per sign-up.

N `register_user` transactions (one welcome email each, committed one by one
from 4 client threads) are queued, then 2 `jobs worker` processes deliver
them. Side by side: the Celery design with one task per email over one reused
SMTP connection per worker process. Rates are read off the sink's counter.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import uuid

import redis

from bench import fanout
from bench.celery_design import REDIS_URL
from bench.delivery import LOGS, Sink, measured_rate, worker_env
from bench.processes import jobs_worker_command, spawn, stop
from bench.stats import median
from jobs.accounts import register_user
from jobs.db import session_factory

CLIENTS = 4
FRONTEND_URL = "https://shop.example.com"


def register(url: str, count: int, prefix: str) -> None:
    """``count`` sign-ups, one transaction each, from CLIENTS threads."""
    sessions = session_factory(url)

    def client(n: int) -> None:
        for i in range(n, count, CLIENTS):
            with sessions() as session, session.begin():
                register_user(session, email=f"{prefix}-{i}@example.com", username=f"t{i}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def jobs_rate(url: str, sink: Sink, *, emails: int, workers: int, connections: int) -> float:
    fanout.reset(url)
    register(url, emails, f"tx-{uuid.uuid4().hex[:8]}")
    env = worker_env(url, sink.host, sink.port, connections)
    command = jobs_worker_command(queues="email", concurrency=connections)
    processes = [spawn(command, env, LOGS / f"tx-worker-{n}.log") for n in range(workers)]
    try:
        rate = measured_rate(sink, emails, timeout=1800)
    finally:
        stop(processes)
    sent = fanout.count(url, "SELECT count(*) FROM email_messages WHERE status = 'sent'")
    if sent != emails:
        raise RuntimeError(f"{sent} of {emails} welcome emails marked sent")
    return rate


def _celery_enqueue(env: dict[str, str], emails: int) -> None:
    os.environ.update(env)
    from bench.celery_design import send_transactional_email_task

    for i in range(emails):
        send_transactional_email_task.delay(
            email_to=f"celery-{i}@example.com",
            subject=f"Welcome, c{i}!",
            template_name="welcome",
            template_data={"username": f"c{i}", "frontend_url": FRONTEND_URL},
        )


def celery_rate(url: str, sink: Sink, *, emails: int, processes: int) -> float:
    """The Celery design: tasks queued first, then prefork workers drain them."""
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()
    env = {
        "DATABASE_URL": url,
        "BENCH_SMTP_HOST": sink.host,
        "BENCH_SMTP_PORT": str(sink.port),
        "BENCH_REDIS_URL": REDIS_URL,
    }
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(_celery_enqueue, (env, emails))
    command = [
        sys.executable, "-m", "celery", "-A", "bench.celery_design", "worker",
        "-Q", "email_queue", "-c", str(processes), "--pool", "prefork", "--loglevel", "WARNING",
    ]  # fmt: skip
    worker = spawn(command, env, LOGS / "celery-tx-worker.log")
    try:
        return measured_rate(sink, emails, timeout=1800)
    finally:
        stop([worker], timeout=60)
        broker.flushdb()
        broker.close()


def run(
    url: str, sink: Sink, *, emails: int, repeats: int, workers: int, connections: int
) -> dict[str, float]:
    jobs: list[float] = []
    celery: list[float] = []
    for _ in range(repeats):  # interleaved, so drift hits both arms alike
        celery.append(celery_rate(url, sink, emails=emails, processes=workers))
        jobs.append(jobs_rate(url, sink, emails=emails, workers=workers, connections=connections))
    fanout.reset(url)
    return {
        "jobs_per_second": median(jobs),
        "celery_per_second": median(celery),
        "ratio": median(jobs) / median(celery),
    }

"""Scenario 4: the same promotion the way the original Celery design does it."""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time

import redis

from bench.celery_design import REDIS_URL
from bench.delivery import LOGS, Sink, measured_rate
from bench.processes import spawn, stop
from bench.stats import median


def _fan_out_child(env: dict[str, str]) -> tuple[float, float, int]:
    os.environ.update(env)
    from bench.celery_design import send_promotion_emails

    started = time.perf_counter()
    summary = send_promotion_emails()  # the task body, as beat would run it
    seconds = time.perf_counter() - started
    return (
        seconds,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        summary["total_users"],
    )


def run(url: str, sink: Sink, *, users: int, repeats: int, processes: int) -> dict[str, float]:
    broker = redis.Redis.from_url(REDIS_URL)
    env = {
        "DATABASE_URL": url,
        "BENCH_SMTP_HOST": sink.host,
        "BENCH_SMTP_PORT": str(sink.port),
        "BENCH_REDIS_URL": REDIS_URL,
    }
    fan_seconds: list[float] = []
    rss: list[float] = []
    rates: list[float] = []
    command = [
        sys.executable, "-m", "celery", "-A", "bench.celery_design", "worker",
        "-Q", "email_queue", "-c", str(processes), "--pool", "prefork", "--loglevel", "WARNING",
    ]  # fmt: skip
    for _ in range(repeats):
        broker.flushdb()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seconds, peak, total = pool.apply(_fan_out_child, (env,))
        if total != users:
            raise RuntimeError(f"Celery fan-out saw {total} users, expected {users}")
        fan_seconds.append(seconds)
        rss.append(peak)
        worker = spawn(command, env, LOGS / "celery-worker.log")
        try:
            rates.append(measured_rate(sink, users, timeout=3600))
        finally:
            stop([worker], timeout=60)
    broker.flushdb()
    return {
        "fanout_seconds": median(fan_seconds),
        "fanout_per_second": users / median(fan_seconds),
        "fanout_peak_rss_mib": max(rss),
        "per_second": median(rates),
    }

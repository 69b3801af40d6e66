"""Scenario 8: a sign-up burst while 2 workers deliver.

4 client processes sign users up at a steady combined RATE per second (open
loop: each keeps its own schedule) for DURATION seconds, while 2 `jobs worker`
processes deliver to Postfix's smtp-sink. A message is accepted when the
worker gets the server's 250: the ledger's ``sent_at``, stamped by the worker
right then on the same clock as the commit times taken here (an aiosmtpd sink
that stamps messages itself could not keep up on 2 loaded cores). The backlog
(pending ledger rows) is sampled every second.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import psycopg

from bench import fanout
from bench.delivery import LOGS, Sink, worker_env
from bench.processes import jobs_worker_command, spawn, stop
from bench.stats import percentile
from jobs.accounts import register_user
from jobs.db import session_factory

CLIENTS = 4
STARTUP = 5.0  # seconds for the client processes to start before the schedule begins
PENDING = "SELECT count(*) FROM email_messages WHERE status = 'pending'"


def _wait(url: str, query: str, ok: Callable[[int], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok(fanout.count(url, query)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{query!r}: still {fanout.count(url, query)}")
        time.sleep(0.1)


def _client(url: str, n: int, per_client: float, duration: float, start: float) -> dict[str, float]:
    """One client process: sign-ups at ``per_client``/s from wall time ``start``;
    the wall-clock commit time per address."""
    sessions = session_factory(url)
    prefix = uuid.uuid4().hex[:8]
    committed: dict[str, float] = {}
    for i in range(int(per_client * duration)):
        delay = start + i / per_client - time.time()
        if delay > 0:
            time.sleep(delay)  # the open-loop schedule, not synchronisation
        email = f"burst-{prefix}-{n}-{i}@example.com"
        with sessions() as session, session.begin():
            register_user(session, email=email, username=f"b{n}-{i}")
        committed[email] = time.time()
    return committed


def _clients(
    url: str, rate: float, duration: float, start: float
) -> tuple[dict[str, float], float]:
    """Sign-ups at ``rate``/s for ``duration`` s from wall time ``start``, from
    CLIENTS processes (threads of one process could not reach 500/s: they share
    one interpreter); the commit time per address, and the achieved enqueue rate."""
    spawned = multiprocessing.get_context("spawn")  # no forked copy of this process's pools
    with ProcessPoolExecutor(CLIENTS, mp_context=spawned) as pool:
        futures = [
            pool.submit(_client, url, n, rate / CLIENTS, duration, start) for n in range(CLIENTS)
        ]
        committed: dict[str, float] = {}
        for future in futures:
            committed.update(future.result())
    return committed, len(committed) / (max(committed.values()) - start)


def run(
    url: str, sink: Sink, *, rate: float, duration: float, workers: int, connections: int
) -> dict[str, float]:
    fanout.reset(url)
    env = worker_env(url, sink.host, sink.port, connections)
    command = jobs_worker_command(queues="email", concurrency=connections)
    processes = [spawn(command, env, LOGS / f"burst-worker-{n}.log") for n in range(workers)]
    backlog: list[int] = []
    try:
        live = "SELECT count(*) FROM procrastinate_workers"
        _wait(url, live, lambda n: n >= workers, timeout=60)
        result: list[tuple[dict[str, float], float]] = []
        start = time.time() + STARTUP  # for the client processes to import jobs and connect
        clients = threading.Thread(
            target=lambda: result.append(_clients(url, rate, duration, start))
        )
        clients.start()
        while clients.is_alive():
            if time.time() >= start:
                backlog.append(fanout.count(url, PENDING))
            clients.join(timeout=1.0)
        [(committed, enqueue_rate)] = result
        _wait(url, PENDING, lambda n: n == 0, timeout=600)
    finally:
        stop(processes)
    with psycopg.connect(url) as conn:
        accepted = {
            to: at.timestamp()
            for to, at in conn.execute(
                "SELECT to_address, sent_at FROM email_messages WHERE status = 'sent'"
            )
        }
    delays = [(accepted[email] - at) * 1000 for email, at in committed.items()]
    stamps = sorted(accepted[email] for email in committed)
    fanout.reset(url)
    half = backlog[len(backlog) // 2 :] or [0]
    return {
        "enqueue_per_second": enqueue_rate,
        "delivery_per_second": len(stamps) / max(stamps[-1] - stamps[0], 1e-9),
        "p50_ms": percentile(delays, 50),
        "p99_ms": percentile(delays, 99),
        "backlog_max": float(max(backlog or [0])),
        "backlog_second_half_max": float(max(half)),
        "backlog_end": float(backlog[-1] if backlog else 0),
        "emails": float(len(delays)),
    }

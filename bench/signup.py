"""Scenario 1: the signup transaction with and without the welcome-email enqueue.

4 concurrent clients (threads, sync sessions — a typical web app) each run
their share of N transactions. Arm "bare": insert the user row only. Arm
"jobs": `register_user` (user row + ledger row + procrastinate job).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bench.stats import median
from jobs.accounts import INSERT_USER, register_user
from jobs.db import dispose_engines, session_factory
from jobs.mail.address import normalize_address
from jobs.models import User

CLIENTS = 4


# The same signup without the enqueue: the very INSERT of the user row that
# register_user's statement starts with.
_USER_ONLY = select(User).from_statement(text(INSERT_USER).columns(*User.__table__.columns))


def _bare(session: Session, email: str, username: str) -> None:
    if not username.strip():
        raise ValueError("username is empty")
    params = {"email": normalize_address(email), "username": username.strip()}
    session.scalars(_USER_ONLY, params).one()


def _with_jobs(session: Session, email: str, username: str) -> None:
    register_user(session, email=email, username=username)


def _run(url: str, transactions: int, body: Callable[[Session, str, str], None]) -> float:
    """Transactions per second for ``transactions`` spread over CLIENTS threads."""
    sessions = session_factory(url)
    prefix = uuid.uuid4().hex[:8]
    per_client = transactions // CLIENTS
    barrier = threading.Barrier(CLIENTS + 1)

    def client(n: int) -> None:
        barrier.wait()
        for i in range(per_client):
            with sessions() as session, session.begin():
                body(session, f"{prefix}-{n}-{i}@example.com", f"u{n}-{i}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return per_client * CLIENTS / (time.perf_counter() - started)


def run(url: str, *, transactions: int, repeats: int) -> dict[str, float]:
    import asyncio

    _run(url, CLIENTS * 20, _bare)  # warm the pools and caches
    _run(url, CLIENTS * 20, _with_jobs)
    bare: list[float] = []
    jobs: list[float] = []
    for _ in range(repeats):  # interleaved, so drift hits both arms alike
        bare.append(_run(url, transactions, _bare))
        jobs.append(_run(url, transactions, _with_jobs))
    asyncio.run(dispose_engines())
    bare_tps, jobs_tps = median(bare), median(jobs)
    return {
        "bare_tps": bare_tps,
        "jobs_tps": jobs_tps,
        "overhead": bare_tps / jobs_tps - 1.0,
    }

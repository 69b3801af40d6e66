"""Scenario 5: enqueue-commit to SMTP-accepted, with idle workers waiting.

Welcome emails are registered one by one, 20 ms apart; an in-process aiosmtpd
sink stamps each message when it accepts it (smtp-sink cannot).
"""

from __future__ import annotations

import threading
import time
import uuid

from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.delivery import LOGS, worker_env
from bench.processes import jobs_worker_command, spawn, stop
from bench.stats import percentile
from jobs.accounts import register_user
from jobs.db import session_factory
from jobs.dev.sink import Sink, SinkHandler


class StampingHandler(SinkHandler):
    def __init__(self) -> None:
        super().__init__()
        self.accepted: dict[str, float] = {}
        self.done = threading.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = time.time()
        to = envelope.rcpt_tos[0]  # one recipient per message; parsing it would slow the sink
        with self.done:
            self.accepted[to] = stamp
            self.done.notify_all()
        return "250 OK"


def run(url: str, *, messages: int, gap: float = 0.02) -> dict[str, float]:
    handler = StampingHandler()
    with Sink(handler) as sink:
        env = worker_env(url, sink.host, sink.port, connections=4)
        worker = spawn(
            jobs_worker_command(queues="email", concurrency=10), env, LOGS / "latency-worker.log"
        )
        try:
            time.sleep(3)  # idle and listening before the first sign-up
            sessions = session_factory(url)
            committed: dict[str, float] = {}
            prefix = uuid.uuid4().hex[:6]
            for n in range(messages):
                email = f"lat-{prefix}-{n}@example.com"
                with sessions() as session, session.begin():
                    register_user(session, email=email, username=f"lat{n}")
                committed[email] = time.time()
                time.sleep(gap)
            with handler.done:
                handler.done.wait_for(lambda: len(handler.accepted) >= messages, timeout=60)
        finally:
            stop([worker])
    latencies = [(handler.accepted[e] - t) * 1000 for e, t in committed.items()]
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}

"""Scenarios 3 and 6: the campaign delivered by `jobs worker` processes, the
raw ceiling measured the same way, and the workers' peak RSS.

Every rate is read off the sink's own counter, from its first accepted message
to the last, so process start-up is excluded alike from every contender.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psycopg

from bench import cpu, fanout
from bench.processes import jobs_worker_command, peak_rss_mib, spawn, stop
from bench.sinks import PostfixSink, PythonSink, wait_for
from bench.stats import median

Sink = PostfixSink | PythonSink
LOGS = Path(__file__).resolve().parent.parent / ".data" / "bench" / "logs"


def measured_rate(sink: Sink, expected: int, timeout: float) -> float:
    """Messages/s between the sink's first new message and its ``expected``-th."""
    return metered_rate(sink, expected, timeout, {}, None)[0]


def metered_rate(
    sink: Sink, expected: int, timeout: float, groups: cpu.Groups, server: int | None
) -> tuple[float, dict[str, float]]:
    """`measured_rate`, and the CPU microseconds per message of each group (and of
    PostgreSQL, when ``server`` is its postmaster) over the same window."""
    base = sink.count()
    wait_for(sink, base + 1, timeout)
    first, started = sink.count(), time.perf_counter()
    before = cpu.snapshot(groups, server)
    wait_for(sink, base + expected, timeout)
    after = cpu.snapshot(groups, server)
    count = base + expected - first
    return count / (time.perf_counter() - started), cpu.per_item(before, after, count)


def worker_env(url: str, host: str, port: int, connections: int) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "MAIL_SERVER": host,
        "MAIL_PORT": str(port),
        "MAIL_MAX_CONNECTIONS": str(connections),
        "MAIL_RATE_LIMIT": "",
        "PROMOTION_SCHEDULE_ENABLED": "false",
        "WORKER_HTTP_PORT": "0",
        "REDIS_URL": "",
    }


def jobs_rate(
    url: str, sink: Sink, *, users: int, workers: int, connections: int
) -> tuple[float, float, dict[str, float]]:
    """(emails/s, peak RSS MiB of the largest worker, CPU µs per email by group) for
    one delivered campaign."""
    env = worker_env(url, sink.host, sink.port, connections)
    command = jobs_worker_command(queues="email", concurrency=connections)
    processes = [spawn(command, env, LOGS / f"jobs-worker-{n}.log") for n in range(workers)]
    groups = {"senders": lambda: [p.pid for p in processes], "sink": sink.pids}
    try:
        rate, spent = metered_rate(sink, users, 1800, groups, cpu.postmaster(url))
        rss = max(peak_rss_mib(p.pid) for p in processes)
    finally:
        stop(processes)
    sent = fanout.count(url, "SELECT count(*) FROM email_messages WHERE status = 'sent'")
    if sent != users:
        raise RuntimeError(f"{sent} of {users} emails marked sent")
    return rate, rss, spent


def _ceiling_process(
    url: str, host: str, port: int, part: int, parts: int, connections: int, start: Barrier
) -> None:
    """Send this process's share of the campaign's messages over reused connections:
    the same rendering and message building as `jobs`, no queue, no database."""
    from jobs.mail.config import MailConfig
    from jobs.settings import load_settings

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, to_address, template, context, subject, headers"
            " FROM email_messages WHERE id %% %s = %s ORDER BY id",
            (parts, part),
        ).fetchall()
    mail = MailConfig.from_settings(load_settings(MAIL_SERVER=host, MAIL_PORT=port))

    async def send_all() -> None:
        from jobs.mail import smtp
        from jobs.mail.message import build_wire, message_id_for
        from jobs.mail.templates import render

        queue = list(rows)

        async def connection() -> None:
            client = smtp.client(mail.smtp)
            await client.connect()
            try:
                while queue:
                    key, to, template, context, subject, headers = queue.pop()
                    rendered = render(
                        template, {**mail.template_globals, **context}, mail.template_dirs
                    )
                    outgoing = build_wire(
                        sender=mail.sender,
                        sender_name=mail.sender_name,
                        to=to,
                        subject=subject or rendered.subject or "",
                        text=rendered.text,
                        html=rendered.html,
                        message_id=message_id_for(key, mail.sender, "bench"),
                        headers=headers,
                    )
                    await smtp.send(client, outgoing)
            finally:
                await client.quit()

        await asyncio.gather(*(connection() for _ in range(connections)))

    start.wait()
    asyncio.run(send_all())


def ceiling_rate(
    url: str, sink: Sink, *, users: int, processes: int, connections: int
) -> tuple[float, dict[str, float]]:
    """The same messages from a bare loop of the same SMTP client, ``processes`` x
    ``connections``; and the CPU µs per email by group."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes + 1)
    children = [
        context.Process(
            target=_ceiling_process,
            args=(url, sink.host, sink.port, n, processes, connections, start),
        )
        for n in range(processes)
    ]
    for child in children:
        child.start()
    server = cpu.postmaster(url)
    groups = {"senders": lambda: [c.pid for c in children if c.pid], "sink": sink.pids}
    start.wait()
    try:
        return metered_rate(sink, users, 1800, groups, server)
    finally:
        for child in children:
            child.join(timeout=60)


def run(
    url: str, sink: Sink, *, users: int, repeats: int, workers: int, connections: int
) -> dict[str, float]:
    jobs: list[float] = []
    ceiling: list[float] = []
    rss: list[float] = []
    spent: dict[str, list[float]] = {}
    for _ in range(repeats):
        fanout.reset(url)
        asyncio.run(fanout.fan_out(url))
        rate, ceiling_cpu = ceiling_rate(
            url, sink, users=users, processes=workers, connections=connections
        )
        ceiling.append(rate)
        rate, peak, jobs_cpu = jobs_rate(
            url, sink, users=users, workers=workers, connections=connections
        )
        jobs.append(rate)
        rss.append(peak)
        for prefix, used in (("ceiling", ceiling_cpu), ("jobs", jobs_cpu)):
            for group, micros in used.items():
                spent.setdefault(f"{prefix}_{group}_us", []).append(micros)
    return {
        "jobs_per_second": median(jobs),
        "ceiling_per_second": median(ceiling),
        "ratio": median(jobs) / median(ceiling),
        "worker_peak_rss_mib": max(rss),
        **{key: median(values) for key, values in spent.items()},
    }

"""The SMTP client alone: `jobs`' client against aiosmtplib, same messages, same sink.

    python -m bench.smtp_client [--messages N] [--rounds R]

One process sends N welcome emails (built once by `build_wire`) to Postfix's
smtp-sink over 1 and over 4 connections: with aiosmtplib (`sendmail`, a reply
per command), with `jobs.mail.smtp_connection` pipelining (the sink offers
PIPELINING), and with it told the sink does not (a reply per command). Prints
emails/s and this process's CPU per email, per round, so the spread shows.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Awaitable, Callable

import aiosmtplib

from bench.sinks import start_sink
from jobs.mail import smtp
from jobs.mail.config import SmtpConfig
from jobs.mail.message import Outgoing, build_wire

Sender = Callable[[str, int, list[Outgoing]], Awaitable[None]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _aiosmtplib(host: str, port: int, messages: list[Outgoing]) -> None:
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as client:
        for message in messages:
            await client.sendmail(message.sender, [message.recipient], message.data)


async def _jobs(host: str, port: int, messages: list[Outgoing], *, pipelining: bool) -> None:
    client = smtp.client(SmtpConfig(host=host, port=port))
    await client.connect()
    if not pipelining:
        client.extensions.pop("PIPELINING", None)
    for message in messages:
        await smtp.send(client, message)
    await client.quit()


async def _pipelined(host: str, port: int, messages: list[Outgoing]) -> None:
    await _jobs(host, port, messages, pipelining=True)


async def _one_by_one(host: str, port: int, messages: list[Outgoing]) -> None:
    await _jobs(host, port, messages, pipelining=False)


CLIENTS: dict[str, Sender] = {
    "aiosmtplib": _aiosmtplib,
    "jobs, a reply per command": _one_by_one,
    "jobs, pipelined": _pipelined,
}


def _messages(count: int) -> list[Outgoing]:
    return [
        build_wire(
            sender="noreply@example.com",
            sender_name="Shop",
            to=f"user{n}@example.com",
            subject="Welcome, Ann!",
            text="Hello Ann,\n\nWelcome aboard!\n\nGet started: https://shop.example.com\n" * 3,
            html="<html><body>" + "<p>Hello Ann, welcome aboard!</p>" * 20 + "</body></html>",
            message_id=f"<{n}@example.com>",
        )
        for n in range(count)
    ]


async def _run(
    send: Sender, host: str, port: int, messages: list[Outgoing], connections: int
) -> str:
    share = [messages[n::connections] for n in range(connections)]
    started, cpu = time.perf_counter(), _cpu()
    await asyncio.gather(*(send(host, port, part) for part in share))
    elapsed = time.perf_counter() - started
    rate, per_email = len(messages) / elapsed, (_cpu() - cpu) / len(messages) * 1e6
    return f"{rate:7,.0f} emails/s, {per_email:4.0f} µs CPU/email"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    messages = _messages(args.messages)
    sink = start_sink()
    try:
        print(f"{args.messages:,} emails to {sink.name}, this process's CPU")
        for connections in (1, 4):
            for name, send in CLIENTS.items():
                runs = [
                    asyncio.run(_run(send, sink.host, sink.port, messages, connections))
                    for _ in range(args.rounds)
                ]
                print(f"{connections} connection(s), {name:26} " + " | ".join(runs))
    finally:
        sink.stop()


if __name__ == "__main__":
    main()

"""CPU time of benchmark processes, from /proc: where a scenario's cores go.

A rate says how fast; CPU per email says what it cost and whom. On a machine
whose cores are all busy the two are the same story, told by process group:
the Python processes that build and send, PostgreSQL, the SMTP sink.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import psycopg

TICKS = os.sysconf("SC_CLK_TCK")
Groups = Mapping[str, Callable[[], Iterable[int]]]  # a name -> the pids it holds now


def _fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system time of ``pid`` (and of its children it has waited for)."""
    fields = _fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _fields(int(entry.name))) and fields[1] == str(pid):
            children.append(int(entry.name))
    return children


def postmaster(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine; else None."""
    with psycopg.connect(url) as conn:  # the backend's parent, read while it lives
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = _fields(row[0]) if row else None
    if backend is None:  # another machine (or another PID namespace)
        return None
    parent = int(backend[1])
    comm = Path(f"/proc/{parent}/comm")
    return parent if comm.exists() and comm.read_text().startswith("postgres") else None


def postgres_seconds(main: int) -> float:
    """The server's CPU time: the postmaster, its live children, and those that exited."""
    return cpu_seconds(main, reaped=True) + sum(cpu_seconds(p) for p in _children(main))


def snapshot(groups: Groups, server: int | None) -> dict[str, float]:
    """CPU seconds so far of each group (and of PostgreSQL when ``server`` is known)."""
    seconds = {name: sum(cpu_seconds(p) for p in pids()) for name, pids in groups.items()}
    if server is not None:
        seconds["postgresql"] = postgres_seconds(server)
    return seconds


def per_item(
    before: Mapping[str, float], after: Mapping[str, float], items: int
) -> dict[str, float]:
    """Microseconds of CPU per item in each group between two snapshots."""
    return {name: (after[name] - before[name]) / items * 1e6 for name in before}

"""What the figures were measured on: cores, RAM, Python, PostgreSQL, packages."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import psycopg

PACKAGES = (
    "procrastinate",
    "psycopg",
    "sqlalchemy",
    "jinja2",
    "celery",
    "kombu",
    "redis",
)


def _ram_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "ram": f"{_ram_gib():.0f} GiB",
        "python": platform.python_version(),
        "postgresql": str(row[0]).split()[0] if row else "?",
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }

"""Child processes of a benchmark: `jobs worker`s, Celery workers, peak RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process: its peak resident set size."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a Celery prefork pool's children)."""
    found = [pid]
    for child_pid in Path("/proc").iterdir():
        if not child_pid.name.isdigit():
            continue
        try:
            stat = (child_pid / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.extend(tree_pids(int(child_pid.name)))
    return found


def spawn(command: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command), env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=out
        )


def stop(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def jobs_worker_command(*, queues: str, concurrency: int) -> list[str]:
    """The real `jobs worker` CLI, as an operator runs it."""
    return [
        sys.executable,
        "-m",
        "jobs.cli",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
    ]

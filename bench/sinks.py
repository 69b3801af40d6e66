"""The SMTP sink the benchmarks deliver to.

Postfix's `smtp-sink` (C) so the sink is not the bottleneck: taken from PATH,
or unpacked from Debian's `postfix` package into .data/bench (the binary only —
no mail system is configured). Otherwise an aiosmtpd sink, and the report says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from jobs.dev.sink import Sink, free_port

ROOT = Path(__file__).resolve().parent.parent
UNPACKED = ROOT / ".data" / "bench" / "postfix"
_COUNT = re.compile(rb"mesg=(\d+)")


def smtp_sink_binary() -> Path | None:
    found = shutil.which("smtp-sink")
    if found:
        return Path(found)
    binary = UNPACKED / "usr" / "sbin" / "smtp-sink"
    if binary.exists():
        return binary
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            ["apt-get", "download", "postfix"], cwd=tmp, capture_output=True, check=False
        )
        debs = list(Path(tmp).glob("postfix_*.deb"))
        if got.returncode != 0 or not debs:
            return None
        UNPACKED.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(UNPACKED)], check=True)
    return binary if binary.exists() else None


class PostfixSink:
    """`smtp-sink -c`: counts accepted messages, discards them."""

    name = "postfix smtp-sink"

    def __init__(self, binary: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        env = {**os.environ, "LD_LIBRARY_PATH": str(UNPACKED / "usr" / "lib" / "postfix")}
        command = [str(binary), "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        command += [f"{self.host}:{self.port}", "4096"]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
        self._count = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.3)

    def _read(self) -> None:
        assert self._process.stdout is not None
        while chunk := self._process.stdout.read1(65536):  # type: ignore[attr-defined]  # a BufferedReader, typed IO[bytes]
            found = _COUNT.findall(chunk)
            if found:
                self._count = int(found[-1])

    def count(self) -> int:
        return self._count

    def pids(self) -> list[int]:
        return [self._process.pid]

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


class PythonSink:
    """Fallback: jobs' own aiosmtpd sink, in a thread of this process."""

    name = "aiosmtpd (smtp-sink not available)"

    def __init__(self) -> None:
        self._sink = Sink().start()
        self.host, self.port = self._sink.host, self._sink.port

    def count(self) -> int:
        return len(self._sink.messages)

    def pids(self) -> list[int]:
        return []  # a thread of the benchmark's own process: not told apart

    def stop(self) -> None:
        self._sink.stop()


def start_sink() -> PostfixSink | PythonSink:
    binary = smtp_sink_binary()
    return PostfixSink(binary) if binary else PythonSink()


def wait_for(sink: PostfixSink | PythonSink, expected: int, timeout: float) -> float:
    """Seconds until ``sink`` has counted ``expected`` messages (raises on timeout)."""
    started = time.perf_counter()
    while sink.count() < expected:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"sink counted {sink.count()} of {expected} messages")
        time.sleep(0.02)
    return time.perf_counter() - started

"""A PostgreSQL cluster of a test's own, on a temporary directory, that it may restart.

It runs the PostgreSQL binaries shipped in the pgserver wheel (a dependency of
jobs, so always there). PostgreSQL refuses to run as root: as root, the cluster
runs as the ``pgserver`` user (which pgserver itself creates) or ``postgres``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jobs.dev.sink import free_port


def _bin() -> Path:
    """pgserver's bundled binaries, found without importing it (its import warns)."""
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


BIN = _bin()


def _user() -> str | None:
    """The user to run PostgreSQL as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "pgserver"], check=True)
    return "pgserver"


class Cluster:
    def __init__(self) -> None:
        self.user = _user()
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(BIN / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """A fast restart: every connection is cut, as in a failover or maintenance."""
        self.stop("fast")
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A started cluster; stopped and deleted afterwards."""
    own = Cluster().init()
    try:
        own.start()
        yield own
    finally:
        own.remove()

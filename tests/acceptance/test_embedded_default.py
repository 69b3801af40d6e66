"""With DATABASE_URL unset, every command works on the embedded server's database, which
is migrated on first use (a fresh clone needs no `jobs migrate`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    path = ROOT / ".data" / f"test-embedded-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _jobs(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(JOBS_DATA_DIR=str(data_dir), DATABASE_URL="")
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_every_command_uses_a_migrated_embedded_database(fresh_data_dir: Path) -> None:
    status = _jobs("status", data_dir=fresh_data_dir)
    assert status.returncode == 0, status.stderr
    assert "Queues" in status.stdout
    assert "migrating the embedded database" in status.stderr
    campaigns = _jobs("campaigns", data_dir=fresh_data_dir)  # already migrated: no step
    assert campaigns.returncode == 0, campaigns.stderr
    assert "migrating" not in campaigns.stderr

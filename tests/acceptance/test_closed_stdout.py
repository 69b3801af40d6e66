"""A closed stdout (`jobs ... | head -0`) loses output, never work: each command prints what it
changed after the commit, and a broken pipe ends it quietly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, count


def _jobs_with_closed_stdout(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `jobs <args>` whose stdout's reader is already gone (as `| head -0`)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [sys.executable, "-m", "jobs.cli", *args],
            cwd=ROOT,
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)


@pytest.mark.parametrize(
    ("args", "query"),
    [
        (
            (
                "campaigns",
                "add",
                "spring",
                "--subject",
                "S",
                "--title",
                "T",
                "--content",
                "C",
                "--link",
                "/spring",
            ),
            "SELECT count(*) FROM campaigns WHERE name = 'spring'",
        ),
        (
            ("suppressions", "add", "gone@example.com", "--reason", "manual"),
            "SELECT count(*) FROM suppressions WHERE address = 'gone@example.com'",
        ),
    ],
)
def test_a_change_survives_a_closed_stdout(
    database_url: str, args: tuple[str, ...], query: str
) -> None:
    done = _jobs_with_closed_stdout(*args)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    assert count(database_url, query) == 1

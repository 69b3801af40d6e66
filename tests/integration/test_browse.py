"""Browsing from scripts: `jobs list`, `jobs show`, `jobs emails` (and `jobs web`'s refusal
to open the dashboard to the network without credentials)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobs import cli
from jobs.db import session_factory
from jobs.ops import browse
from tests.conftest import queue_chunk
from tests.web import SECRET, failed_job


def test_list_filters_and_pages(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    failed = failed_job(database_url, key="failed")
    waiting = [queue_chunk(database_url, 1, key=f"w{i}")[1] for i in range(3)]

    assert cli.main(["list", "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert f"{failed:>9}  email      email.deliver" in out
    assert all(f"{job:>9} " not in out for job in waiting)

    assert cli.main(["list", "--queue", "email", "--limit", "2"]) == 0
    listed = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == sorted([failed, *waiting], reverse=True)[:2]

    with session_factory(database_url)() as session:
        first = browse.list_jobs(session, browse.JobFilter(status="todo"), limit=2)
        rest = browse.list_jobs(
            session, browse.JobFilter(status="todo"), limit=2, before_id=first[-1].id
        )
    assert [j.id for j in first + rest] == sorted(waiting, reverse=True)

    assert cli.main(["list", "--queue", "default"]) == 0
    assert "no job matches" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--status", "lost"], "unknown job status 'lost'"),
        (["list", "--limit", "0"], "limit must be between 1 and 500"),
        (["emails", "--status", "bounced"], "unknown email status 'bounced'"),
        (["show", "424242"], "there is no job 424242"),
    ],
)
def test_bad_input_is_one_line(
    database_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_show_and_emails_link_jobs_and_emails(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, job_id = queue_chunk(database_url, 2)
    assert cli.main(["emails", "--to", "User1@Example.com"]) == 0
    out = capsys.readouterr().out
    assert f"{ids[1]:>9}  {job_id:>9}  pending" in out
    assert "user0@example.com" not in out

    assert cli.main(["show", str(job_id)]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id}: todo  queue email  task email.deliver" in out
    assert "deferred" in out
    assert f"email {ids[0]} to user0@example.com: pending" in out


def test_web_refuses_a_public_address_without_credentials(
    database_url: str, env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    env(SECRET_KEY=SECRET)
    assert cli.main(["web", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "WEB_USERNAME and WEB_PASSWORD are not set" in err
    assert len(err.strip().splitlines()) == 1

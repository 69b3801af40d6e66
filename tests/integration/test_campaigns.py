"""`jobs campaigns`: the seeded default, adding, enabling, disabling; each one is sent."""

from __future__ import annotations

from collections import Counter

import pytest

from jobs import cli
from jobs.dev.sink import Sink
from tests.conftest import faults
from tests.integration.test_promotion import SECRET, add_users, drain_all


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.settings import get_settings

    monkeypatch.setenv("SECRET_KEY", SECRET)
    get_settings.cache_clear()


def test_the_original_promotion_is_seeded(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["campaigns"]) == 0
    assert cli.main(["campaigns", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == out[1]
    assert out[0].split(maxsplit=3) == [
        "default",
        "active",
        "/promotions",
        "Special Promotion Just For You!",
    ]


def test_add_disable_enable_and_each_active_campaign_is_sent(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 2)
    new = ["--subject", "Spring sale", "--title", "Spring!", "--content", "20% off", "--link"]
    assert cli.main(["campaigns", "add", "spring", *new, "/spring", "--enable"]) == 0
    assert cli.main(["campaigns", "disable", "default"]) == 0
    assert "default              disabled" in capsys.readouterr().out
    assert cli.main(["promote"]) == 0
    drain_all(database_url)
    assert Counter(m["Subject"] for m in faults(smtp).parsed()) == {"Spring sale": 2}
    assert cli.main(["campaigns", "enable", "default"]) == 0
    assert cli.main(["promote", "--campaign", "default"]) == 0
    drain_all(database_url)
    subjects = Counter(m["Subject"] for m in faults(smtp).parsed())
    assert subjects == {"Spring sale": 2, "Special Promotion Just For You!": 2}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["campaigns", "enable", "nope"], "no campaign named 'nope' (campaigns: default)"),
        (["promote", "--campaign", "nope"], "no campaign named 'nope'"),
        (
            [
                "campaigns",
                "add",
                "default",
                "--subject",
                "s",
                "--title",
                "t",
                "--content",
                "c",
                "--link",
                "/x",
            ],
            "a campaign named 'default' exists already",
        ),
        (
            [
                "campaigns",
                "add",
                "x",
                "--subject",
                "s",
                "--title",
                "t",
                "--content",
                "c",
                "--link",
                "promotions",
            ],
            "must start with '/'",
        ),
        (
            [
                "campaigns",
                "add",
                "x",
                "--subject",
                "a\nBcc: y@example.com",
                "--title",
                "t",
                "--content",
                "c",
                "--link",
                "/x",
            ],
            "control character",
        ),
    ],
)
def test_mistakes_are_one_clear_line(
    database_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_disabled_campaign_cannot_be_promoted_by_name(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["campaigns", "disable", "default"]) == 0
    assert cli.main(["promote", "--campaign", "default"]) == 2
    assert "campaign 'default' is disabled" in capsys.readouterr().err
    assert cli.main(["promote"]) == 0
    assert "no active campaign" in capsys.readouterr().out

"""Campaign and unsubscribe commands on a real database and a real SMTP peer:
campaigns show/edit/delete, preview, send-test, unsubscribe by link or address, resubscribe."""

from __future__ import annotations

import email
import logging
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import psycopg
import pytest

from jobs import cli
from jobs.dev.sink import Sink
from jobs.promotions.unsubscribe import make_token, signing_key
from jobs.settings import get_settings
from tests.conftest import count, faults
from tests.integration.test_promotion import SECRET, add_users

NEW = ["--subject", "Été -20 %", "--title", "Summer!", "--content", "Half off", "--link"]
POSTAL = "Shop Inc., 1 Main Street, Springfield"


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("FRONTEND_URL", "https://shop.example.com")
    monkeypatch.setenv("PROMOTION_POSTAL_ADDRESS", POSTAL)
    get_settings.cache_clear()


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def _part(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


def test_add_is_disabled_unless_enabled_then_show_edit_delete(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["campaigns", "add", "summer", *NEW, "/sale/été"]) == 0
    assert "disabled: `jobs campaigns enable summer`" in _out(capsys)
    assert cli.main(["campaigns", "add", "now", *NEW, "/now", "--enable"]) == 0
    assert "now                  active" in _out(capsys)
    assert cli.main(["campaigns", "show", "summer"]) == 0
    shown = _out(capsys)
    assert "state:    disabled" in shown
    assert "subject:  Été -20 %" in shown
    assert "link:     /sale/été -> https://shop.example.com/sale/%C3%A9t%C3%A9" in shown
    assert cli.main(["campaigns", "edit", "summer", "--subject", "Summer sale"]) == 0
    assert cli.main(["campaigns", "show", "summer"]) == 0
    assert "subject:  Summer sale" in _out(capsys)
    assert cli.main(["campaigns", "edit", "summer", "--link", "no-slash"]) == 2
    assert "must start with '/'" in capsys.readouterr().err
    assert cli.main(["campaigns", "delete", "summer"]) == 0
    assert "summer" not in _out(capsys).split("deleted")[1]
    assert cli.main(["campaigns", "show", "summer"]) == 2
    assert "no campaign named 'summer'" in capsys.readouterr().err


def test_a_campaign_that_ran_is_disabled_not_deleted(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 1)
    assert cli.main(["promote"]) == 0
    assert cli.main(["campaigns", "delete", "default"]) == 2
    assert "disable it instead" in capsys.readouterr().err
    assert count(database_url, "SELECT count(*) FROM campaigns") == 1


def test_preview_prints_or_writes_a_template_without_sending(
    database_url: str, smtp: Sink, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["preview", "welcome", "--context", '{"username": "Zoë"}']) == 0
    shown = _out(capsys)
    assert shown.startswith("Subject: Welcome, Zoë!\n")
    assert "--- text ---\nHello Zoë," in shown
    assert '<h1 style="font-size:22px;">Hello Zoë,</h1>' in shown
    assert cli.main(["preview", "welcome", "--context", "[1]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    assert cli.main(["preview", "welcome"]) == 2  # the template needs a username
    assert "username" in capsys.readouterr().err
    assert cli.main(["preview", "--campaign", "default", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "default.eml",
        "default.html",
        "default.subject.txt",
        "default.txt",
    ]
    message = email.message_from_bytes((tmp_path / "default.eml").read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Special Promotion Just For You!"
    assert message["List-Id"] == "default <default.example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for kind in ("plain", "html"):
        assert POSTAL in _part(message, kind)
    assert smtp.messages == []


def test_send_test_sends_one_email_now_and_prints_the_answer(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send-test", "--to", "me@example.com", "--template", "welcome"]
    assert cli.main([*argv, "--context", '{"username": "Me"}']) == 0
    shown = _out(capsys)
    assert "sent 'Welcome, Me!' to me@example.com" in shown
    assert "server answered: Message accepted for delivery" in shown
    assert cli.main(["send-test", "--to", "me@example.com", "--campaign", "default"]) == 0
    first, second = faults(smtp).parsed()
    assert first["Subject"] == "Welcome, Me!"
    assert second["Subject"] == "Special Promotion Just For You!"
    assert POSTAL in _part(second, "plain")
    assert count(database_url, "SELECT count(*) FROM email_messages") == 0  # no queue
    add_users(database_url, 1)  # a user gets their own, working unsubscribe link
    assert cli.main(["send-test", "--to", "u0@example.com", "--campaign", "default"]) == 0
    token = make_token(signing_key(get_settings()), 1, "u0@example.com")
    assert f"token={token}" in faults(smtp).parsed()[2]["List-Unsubscribe"]
    faults(smtp).refuse["me@example.com"] = "550 5.1.1 no such user"
    assert cli.main(["send-test", "--to", "me@example.com", "--campaign", "default"]) == 1
    assert "refused the message: 550 5.1.1 no such user" in capsys.readouterr().err


def _subscribed(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT unsubscribed_at IS NULL FROM users").fetchone()
    assert row is not None
    return bool(row[0])


def test_unsubscribe_by_link_token_or_address_and_resubscribe(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 1)
    token = make_token(signing_key(get_settings()), 1, "u0@example.com")
    link = f"https://shop.example.com/unsubscribe?token={token}"
    assert cli.main(["unsubscribe", link]) == 0
    assert "user 1 (u0@example.com) unsubscribed from promotions" in _out(capsys)
    assert not _subscribed(database_url)
    assert cli.main(["resubscribe", "--email", "U0@example.com"]) == 0
    assert "gets promotions again" in _out(capsys)
    assert _subscribed(database_url)
    assert cli.main(["unsubscribe", "--email", "u0@example.com"]) == 0
    assert cli.main(["resubscribe", "--email", "u0@example.com"]) == 0
    assert cli.main(["unsubscribe", token]) == 0
    assert cli.main(["unsubscribe", token]) == 0
    assert "had already unsubscribed" in _out(capsys)
    assert cli.main(["resubscribe", "--email", "nobody@example.com"]) == 2
    assert "no user with email 'nobody@example.com'" in capsys.readouterr().err
    assert cli.main(["unsubscribe"]) == 2


def test_rotated_secret_key_keeps_old_links_valid(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 1)
    old = make_token(signing_key(get_settings()), 1, "u0@example.com")
    monkeypatch.setenv("SECRET_KEY", "a-brand-new-secret-key-0987654321")
    get_settings.cache_clear()
    assert cli.main(["unsubscribe", old]) == 2  # no fallback: the old link is refused
    assert "invalid unsubscribe token" in capsys.readouterr().err
    monkeypatch.setenv("SECRET_KEY_FALLBACKS", f"another-old-key-1234567890, {SECRET}")
    get_settings.cache_clear()
    assert cli.main(["unsubscribe", f"https://shop.example.com/unsubscribe?token={old}"]) == 0
    assert not _subscribed(database_url)


def test_the_worker_warns_when_promotions_have_no_postal_address(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PROMOTION_SCHEDULE_ENABLED", "true")
    monkeypatch.setenv("PROMOTION_POSTAL_ADDRESS", "")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="jobs.cli"):
        cli._check_task_settings(get_settings(), None)
    assert "PROMOTION_POSTAL_ADDRESS is unset" in caplog.text
    caplog.clear()
    monkeypatch.setenv("PROMOTION_POSTAL_ADDRESS", POSTAL)
    get_settings.cache_clear()
    cli._check_task_settings(get_settings(), None)
    assert "PROMOTION_POSTAL_ADDRESS" not in caplog.text


def test_preview_a_campaign_in_a_template_of_your_own(
    database_url: str, tmp_path: Path, env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "deal.txt").write_text("{{ promotion_title }} for {{ username }}: {{ extra }}\n")
    (tmp_path / "deal.html").write_text("<p>{{ promotion_title }}</p>\n")
    env(MAIL_TEMPLATE_DIR=str(tmp_path))  # type: ignore[operator]  # the env fixture
    argv = ["preview", "deal", "--campaign", "default", "--context", '{"extra": "today"}']
    assert cli.main(argv) == 0
    shown = _out(capsys)
    assert shown.startswith("Subject: Special Promotion Just For You!\n")
    assert "Special Offer Today! for Ann: today" in shown

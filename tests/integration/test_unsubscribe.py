"""One-click unsubscribe (RFC 8058): headers on the wire, signed tokens, applying them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from jobs import cli
from jobs.accounts import register_user
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.errors import ConfigError, InvalidUnsubscribeToken
from jobs.mail.enqueue import enqueue_email
from jobs.promotions.unsubscribe import make_token, signing_key, unsubscribe
from jobs.settings import get_settings, load_settings
from tests.conftest import count, faults
from tests.integration.test_promotion import SECRET, add_users, drain_all

HEADER = re.compile(rb"^List-Unsubscribe: (.*?)\r\n(?! )", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"<(http[^>]*\?token=([^>]+))>")


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    get_settings.cache_clear()


def _promote_and_deliver(url: str) -> None:
    assert cli.main(["promote"]) == 0
    drain_all(url)


def _raw_header(raw: bytes) -> str:
    match = HEADER.search(raw)
    assert match is not None, raw[:500]
    return match.group(1).replace(b"\r\n", b"").decode("ascii")  # unfolded


def test_every_promotion_carries_one_click_headers_and_a_visible_link(
    database_url: str, smtp: Sink
) -> None:
    add_users(database_url, 3)
    _promote_and_deliver(database_url)
    assert len(smtp.messages) == 3
    for raw, message in zip(smtp.messages, faults(smtp).parsed(), strict=True):
        value = _raw_header(raw)  # as sent: one line, no RFC 2047 encoded-words
        assert "=?" not in value
        link, token = LINK.fullmatch(value).groups()  # type: ignore[union-attr]  # it matches
        assert link.startswith("http://localhost:3000/unsubscribe?token=")
        assert re.search(rb"^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r?$", raw, re.M)
        for kind in ("plain", "html"):
            assert link in message.get_body((kind,)).get_content()  # type: ignore[union-attr]  # the part exists
        user_id = count(database_url, f"SELECT id FROM users WHERE email = '{message['To']}'")
        assert token.startswith(f"{user_id}.")


def test_unsubscribe_url_and_mailto_are_configurable(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNSUBSCRIBE_URL", "https://example.com/u?list=promo")
    monkeypatch.setenv("UNSUBSCRIBE_MAILTO", "unsubscribe@example.com")
    get_settings.cache_clear()
    add_users(database_url, 1)
    _promote_and_deliver(database_url)
    [raw] = smtp.messages
    value = _raw_header(raw)
    token = value.split("token=")[1].split(">")[0]
    assert value == (
        f"<https://example.com/u?list=promo&token={token}>, "
        f"<mailto:unsubscribe@example.com?subject=unsubscribe%20{token}>"
    )


def test_welcome_email_carries_no_unsubscribe_header(database_url: str, smtp: Sink) -> None:
    with session_factory(database_url)() as session, session.begin():
        register_user(session, email="ann@example.com", username="ann")
    drain_all(database_url)
    [raw] = smtp.messages
    assert b"List-Unsubscribe" not in raw


def test_token_from_the_email_unsubscribes_once_and_stops_promotions(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 2)
    _promote_and_deliver(database_url)
    raw = next(r for r in smtp.messages if b"To: u0@example.com" in r)
    token = LINK.fullmatch(_raw_header(raw)).group(2)  # type: ignore[union-attr]  # it matches
    assert cli.main(["unsubscribe", token]) == 0
    assert "unsubscribed from promotions" in capsys.readouterr().out
    assert cli.main(["unsubscribe", token]) == 0  # idempotent
    assert "had already unsubscribed" in capsys.readouterr().out
    assert count(database_url, "SELECT count(*) FROM users WHERE unsubscribed_at IS NULL") == 1
    assert cli.main(["promote", "--dry-run"]) == 0
    assert "default: 0 recipient(s)" in capsys.readouterr().out  # the period is done anyway


def test_unsubscribing_before_delivery_suppresses_the_queued_promotion(
    database_url: str, smtp: Sink
) -> None:
    add_users(database_url, 2)
    assert cli.main(["promote"]) == 0
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT user_id, headers->>'List-Unsubscribe' FROM email_messages"
            " WHERE to_address = 'u1@example.com'"
        ).fetchone()
    assert row is not None
    token = row[1].split("token=")[1].rstrip(">")
    with session_factory(database_url)() as session, session.begin():
        assert unsubscribe(session, token).already is False
    drain_all(database_url)
    assert [m["To"] for m in faults(smtp).parsed()] == ["u0@example.com"]
    with psycopg.connect(database_url) as conn:
        status = conn.execute("SELECT status FROM email_messages WHERE user_id = %s", (row[0],))
        assert status.fetchone() == ("suppressed",)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature altered
        lambda t: "2" + t[t.index(".") :],  # someone else's id, same signature
        lambda t: t.split(".")[0],  # no signature
        lambda t: "x" + t,  # garbage
        lambda t: make_token(b"another key", 1, "u0@example.com"),  # forged with a guess
    ],
)
def test_tampered_or_forged_tokens_are_rejected(
    database_url: str, tamper: Callable[[str], str]
) -> None:
    add_users(database_url, 2)
    key = signing_key(get_settings())
    token = make_token(key, 1, "u0@example.com")
    sessions = session_factory(database_url)
    with sessions() as session, session.begin(), pytest.raises(InvalidUnsubscribeToken):
        unsubscribe(session, tamper(token))
    assert count(database_url, "SELECT count(*) FROM users WHERE unsubscribed_at IS NOT NULL") == 0


def test_a_token_dies_with_the_address_it_was_sent_to(database_url: str) -> None:
    add_users(database_url, 1)
    token = make_token(signing_key(get_settings()), 1, "u0@example.com")
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET email = 'new@example.com' WHERE id = 1")
    sessions = session_factory(database_url)
    with sessions() as session, session.begin(), pytest.raises(InvalidUnsubscribeToken) as raised:
        unsubscribe(session, token)
    assert "address has changed" in str(raised.value)


def test_cli_rejects_a_bad_token_with_one_line(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 1)
    assert cli.main(["unsubscribe", "1.not-a-signature"]) == 2
    assert capsys.readouterr().err.startswith("jobs: error: invalid unsubscribe token")


def test_without_secret_key_the_embedded_setup_uses_one_persisted_dev_key(
    tmp_path: Path,
) -> None:
    from jobs.promotions import unsubscribe as module

    settings = load_settings(SECRET_KEY=None, DATABASE_URL=None, JOBS_DATA_DIR=tmp_path)
    first = signing_key(settings)
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    module._dev_secret.cache_clear()  # as a new process would: read the file again
    assert signing_key(settings) == first
    configured = load_settings(SECRET_KEY=SECRET, JOBS_DATA_DIR=tmp_path)
    assert signing_key(configured) != first


def test_without_secret_key_a_configured_database_is_a_config_error() -> None:
    settings = load_settings(SECRET_KEY=None, DATABASE_URL="postgresql://db/app")
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        signing_key(settings)


def _listed(url: str) -> dict[str, tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT address, reason, source FROM suppressions").fetchall()
    return {address: (reason, source) for address, reason, source in rows}


def _token(url: str, email: str) -> str:
    user_id = count(url, f"SELECT id FROM users WHERE email = '{email}'")
    return make_token(signing_key(get_settings()), user_id, email)


def test_an_unsubscribe_goes_on_the_suppression_list_for_promotions_only(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 3)
    assert cli.main(["unsubscribe", _token(database_url, "u0@example.com")]) == 0
    assert cli.main(["unsubscribe", "--email", "U1@example.com"]) == 0
    listed = _listed(database_url)
    assert listed == {
        "u0@example.com": ("unsubscribe", "unsubscribe link"),
        "u1@example.com": ("unsubscribe", "operator: jobs unsubscribe --email"),
    }
    capsys.readouterr()
    assert cli.main(["suppressions", "list"]) == 0
    assert re.search(r"u0@example\.com +unsubscribe", capsys.readouterr().out)
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="u0@example.com", template="welcome", context={"username": "u0"})
    _promote_and_deliver(database_url)
    assert sorted(str(m["To"]) for m in faults(smtp).parsed()) == [
        "u0@example.com",  # the welcome email: an unsubscribe stops promotions only
        "u2@example.com",
    ]
    assert cli.main(["resubscribe", "--email", "u1@example.com"]) == 0
    assert list(_listed(database_url)) == ["u0@example.com"]


def test_a_resubscribe_leaves_a_stronger_reason_on_the_list(database_url: str) -> None:
    add_users(database_url, 1)
    assert cli.main(["suppressions", "add", "u0@example.com", "--reason", "complaint"]) == 0
    with session_factory(database_url)() as session, session.begin():
        assert unsubscribe(session, _token(database_url, "u0@example.com")).already is False
    assert _listed(database_url)["u0@example.com"][0] == "complaint"
    assert cli.main(["resubscribe", "--email", "u0@example.com"]) == 0
    assert _listed(database_url)["u0@example.com"][0] == "complaint"
    assert count(database_url, "SELECT count(*) FROM users WHERE unsubscribed_at IS NULL") == 1


def test_users_who_unsubscribed_before_the_list_recorded_it_are_put_on_it(
    database_url: str,
) -> None:
    from alembic import command

    from jobs.db.migrations import alembic_config, migrate

    command.downgrade(alembic_config(database_url), "0015")
    add_users(database_url, 2, unsubscribed=2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET email = 'Un1@Example.com' WHERE email = 'un1@example.com'")
        conn.execute(
            "INSERT INTO suppressions (address, reason, source)"
            " VALUES ('un1@example.com', 'hard_bounce', 'smtp')"
        )
    migrate(database_url)
    listed = _listed(database_url)
    assert {a: r for a, (r, _) in listed.items()} == {
        "un0@example.com": "unsubscribe",
        "un1@example.com": "hard_bounce",  # already there: kept
    }
    command.downgrade(alembic_config(database_url), "0015")
    assert list(_listed(database_url)) == ["un1@example.com"]

"""Reading reports, VERP return paths and the breaker's verdict: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.errors import ConfigError
from jobs.feedback import reports
from jobs.feedback.breaker import RunChecks, Thresholds, verdict
from jobs.feedback.verp import ledger_ref, return_path, verp_key
from jobs.settings import load_settings

KEY = verp_key(b"k" * 32)


@given(st.integers(min_value=1, max_value=2**62))
def test_a_return_path_names_its_row_and_only_with_its_signature(ledger_id: int) -> None:
    address = return_path(KEY, ledger_id, "b.example.org")
    assert ledger_ref(KEY, address, "b.example.org") == ledger_id
    assert ledger_ref(KEY, address.upper(), "B.example.org") == ledger_id  # case folded
    assert ledger_ref(verp_key(b"other" * 8), address, "b.example.org") is None
    forged = address.replace(f"+{ledger_id}-", f"+{ledger_id + 1}-")
    assert ledger_ref(KEY, forged, "b.example.org") is None
    assert ledger_ref(KEY, address, "elsewhere.org") is None


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_raising(raw: bytes) -> None:
    assert isinstance(reports.parse(raw), list)


@pytest.mark.parametrize(
    ("action", "status", "kind"),
    [
        ("failed", "5.1.1", reports.HARD_BOUNCE),
        ("failed", "5.2.2", reports.SOFT_BOUNCE),  # mailbox full may clear
        ("failed", "4.4.7", reports.SOFT_BOUNCE),
        ("delayed", "4.4.1", reports.SOFT_BOUNCE),
        ("delivered", "2.0.0", None),
        ("relayed", "2.0.0", None),
    ],
)
def test_dsn_actions_and_statuses(action: str, status: str, kind: str | None) -> None:
    assert reports.bounce_kind(action, status) == kind


def test_the_breaker_waits_for_its_sample_then_judges_each_rate() -> None:
    limits = Thresholds(max_bounce_rate=0.05, max_complaint_rate=0.001, min_sample=100)
    assert verdict(99, 99, 0, limits) is None  # too few to judge
    assert verdict(100, 5, 0, limits) is None  # at the limit, not over it
    bounced = verdict(100, 6, 0, limits)
    assert bounced is not None
    assert "PROMOTION_MAX_BOUNCE_RATE" in bounced
    complained = verdict(1000, 0, 2, limits)
    assert complained is not None
    assert "PROMOTION_MAX_COMPLAINT_RATE" in complained


def test_domain_limits_and_bounce_domain_are_validated() -> None:
    settings = load_settings(MAIL_DOMAIN_RATE_LIMITS=" Gmail.com=20, yahoo.com=2.5 ")
    assert settings.domain_rate_limits == {"gmail.com": 20.0, "yahoo.com": 2.5}
    for bad in ("gmail.com", "gmail.com=0", "gmail.com=fast"):
        with pytest.raises(ConfigError, match="MAIL_DOMAIN_RATE_LIMITS"):
            load_settings(MAIL_DOMAIN_RATE_LIMITS=bad)
    with pytest.raises(ConfigError, match="MAIL_BOUNCE_DOMAIN"):
        load_settings(MAIL_BOUNCE_DOMAIN="not a domain")
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET") as error:
        load_settings(WEBHOOK_SECRET=["not", "a", "string"])
    assert "not" not in str(error.value).partition(":")[2]  # a secret is never echoed


def test_delivery_checks_each_run_at_most_once_per_interval() -> None:
    checks = RunChecks(interval=3600.0)
    assert checks.due([7, 8, 7]) == [7, 8]
    assert checks.due([7, 8, 9]) == [9]  # 7 and 8 were just counted: not again this hour
    assert checks.due([]) == []
    always = RunChecks(interval=0.0)
    assert always.due([7]) == [7]
    assert always.due([7]) == [7]

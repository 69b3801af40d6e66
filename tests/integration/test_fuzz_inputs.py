"""Arbitrary input to the public API: it either works or raises a `JobsError`, and the
caller's transaction is always still usable afterwards (never a raw database error)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from jobs import enqueue_email, register_user
from jobs.db import session_factory
from jobs.errors import InvalidUnsubscribeToken, JobsError
from jobs.promotions.unsubscribe import token_user_id, unsubscribe

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**70)
    | st.floats()
    | st.text()
    | st.binary(max_size=8)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.integers() | st.none(), inner, max_size=3)
    ),
    max_leaves=8,
)
anything = json_like | st.sets(st.integers(), max_size=2) | st.just(object())


def _still_usable(session: Session) -> None:
    assert session.execute(text("SELECT 1")).scalar_one() == 1


def _call(session: Session, call: Any, **kwargs: Any) -> None:
    try:
        with session.begin_nested():  # so that a success does not pile up rows
            call(session, **kwargs)
            raise _Undo
    except _Undo:
        pass
    except JobsError:
        pass
    _still_usable(session)


class _Undo(Exception):
    pass


@FUZZ
@given(
    to=st.sampled_from(["a@example.com"]) | anything,
    template=st.sampled_from(["welcome"]) | anything,
    context=st.dictionaries(st.text(max_size=5), json_like, max_size=3) | anything,
    subject=st.none() | st.text(max_size=20) | anything,
    idempotency_key=st.none() | st.text(max_size=20) | anything,
    kind=st.none() | st.text(max_size=10) | anything,
    user_id=st.none() | st.integers() | anything,
    headers=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | anything,
    reply_to=st.none() | st.text(max_size=20) | anything,
    send_at=st.none() | st.datetimes(timezones=st.timezones()) | st.datetimes() | anything,
    delay=st.none() | st.timedeltas() | anything,
)
def test_enqueue_email_takes_anything(database_url: str, **kwargs: Any) -> None:
    with session_factory(database_url)() as session, session.begin():
        _call(session, enqueue_email, **kwargs)


@FUZZ
@given(email=st.text(max_size=30) | anything, username=st.text(max_size=20) | anything)
def test_register_user_takes_anything(database_url: str, email: Any, username: Any) -> None:
    with session_factory(database_url)() as session, session.begin():
        _call(session, register_user, email=email, username=username)


@FUZZ
@given(token=st.text() | st.from_regex(r"\A\s*[0-9]{1,5000}\.[A-Za-z0-9_-]{0,60}\s*\Z") | anything)
def test_unsubscribe_takes_any_token(database_url: str, token: Any) -> None:
    with session_factory(database_url)() as session, session.begin():
        _call(session, unsubscribe, token=token, key=b"k" * 32)


@pytest.mark.parametrize(
    "token",
    [
        "99999999999999999999.abc",
        "9" * 5000 + "." + "a" * 43,
        "9223372036854775808." + "a" * 43,
        "0." + "a" * 43,
        "1.\x00" + "a" * 42,
        "\ud800." + "a" * 43,
    ],
)
def test_token_parsing_is_total(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken):
        token_user_id(token)

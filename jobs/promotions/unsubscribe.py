"""Unsubscribing from promotions: signed tokens (HMAC-SHA256) and applying them.

A token is ``<user id>.<signature>``; the signature covers the user id *and* the
address the email went to, so it can be neither forged nor moved to another
account: if the account's address changes, old links stop working (they are
rejected, never applied to someone else).

The key is derived from SECRET_KEY; tokens signed with a key listed in
SECRET_KEY_FALLBACKS (comma-separated, Django's convention) are still accepted,
so rotating SECRET_KEY does not break the links already sent. Without
SECRET_KEY, a development setup (embedded PostgreSQL, DATABASE_URL unset) uses
a random key generated once and kept in ``$JOBS_DATA_DIR/secret_key``; with a
configured database it is an error, because every process that signs or checks
links must share one key.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Executable, Update, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.errors import ConfigError, InvalidEmailAddress, InvalidUnsubscribeToken, UnknownUser
from jobs.feedback.suppressions import remove, suppress
from jobs.models import EmailMessage, EmailStatus, SuppressionReason, User
from jobs.settings import Settings, get_settings

logger = logging.getLogger(__name__)

_PURPOSE = b"jobs.unsubscribe.v1"
_MAX_TOKEN = 200  # a real token is about 65 characters
_MAX_USER_ID = 2**63 - 1
DEV_KEY_FILE = "secret_key"
LINK_SOURCE = "unsubscribe link"  # the suppression list's source of an unsubscribe
OPERATOR_SOURCE = "operator: jobs unsubscribe --email"


def _derive(secret: bytes) -> bytes:
    return hmac.digest(secret, _PURPOSE, "sha256")


def fallback_keys(settings: Settings) -> tuple[bytes, ...]:
    """Keys that no longer sign but still verify (SECRET_KEY_FALLBACKS)."""
    return tuple(_derive(secret.encode()) for secret in settings.secret_key_fallbacks)


def signing_key(settings: Settings) -> bytes:
    """The key that signs unsubscribe tokens (see the module docstring)."""
    if settings.SECRET_KEY is not None:
        secret = settings.SECRET_KEY.get_secret_value().encode()
    elif settings.DATABASE_URL is None:
        secret = _dev_secret((settings.JOBS_DATA_DIR / DEV_KEY_FILE).resolve())
    else:
        raise ConfigError(
            "SECRET_KEY is not set: it signs the unsubscribe links of promotions and must be "
            "the same for every worker and web process; set it to at least 16 random "
            "characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return _derive(secret)


@functools.cache
def _dev_secret(path: Path) -> bytes:
    """A random secret kept in ``path``, created once (atomically) if missing."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        try:
            os.link(temporary, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    logger.warning(
        "SECRET_KEY is unset: signing unsubscribe links with the development key %s", path
    )
    return path.read_bytes().strip()


def make_token(key: bytes, user_id: int, email: str) -> str:
    """The unsubscribe token for the user ``user_id`` at ``email``."""
    signature = hmac.digest(key, f"{user_id}:{email}".encode(), hashlib.sha256)
    return f"{user_id}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


# ``<user id>.<base64url HMAC-SHA256>``: an id within bigint, a 43-character signature.
_TOKEN = re.compile(r"([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{43})")


def token_user_id(token: object) -> int:
    """The user id a token names (not yet verified); `InvalidUnsubscribeToken` if malformed.

    Total and bounded: any value gives an id within bigint or the error, in constant time.
    """
    match = (
        _TOKEN.fullmatch(token.strip())
        if isinstance(token, str) and len(token) <= _MAX_TOKEN
        else None
    )
    if match is None or int(match[1]) > _MAX_USER_ID:
        raise InvalidUnsubscribeToken("invalid unsubscribe token: malformed")
    return int(match[1])


def token_from(value: str) -> str:
    """The token in ``value``: the token itself, or the link from the email (``?token=``)."""
    value = value.strip()
    if "://" in value or value.startswith(("/", "?")):
        tokens = parse_qs(urlsplit(value).query).get("token") or [""]
        return tokens[0]
    return value


def _verify(keys: Sequence[bytes], token: str, user: User | None) -> User:
    given = token.strip().encode()
    if user is None or not any(
        hmac.compare_digest(make_token(key, user.id, user.email).encode(), given) for key in keys
    ):
        raise InvalidUnsubscribeToken(
            "invalid unsubscribe token: altered, forged, or the account's address has changed"
        )
    return user


@dataclass(frozen=True)
class Unsubscribed:
    user_id: int
    email: str
    since: datetime
    already: bool  # True: nothing changed, the user had unsubscribed before


def _suppress_pending(user_id: int) -> Update:
    """Promotions of this user not sent yet become ``suppressed`` (in-flight ones are skipped)."""
    pending = (
        select(EmailMessage.id)
        .where(
            EmailMessage.user_id == user_id,
            EmailMessage.status == EmailStatus.PENDING,
            EmailMessage.promotion_run_id.is_not(None),
        )
        .with_for_update(skip_locked=True)
    )
    return (
        update(EmailMessage)
        .where(EmailMessage.id.in_(pending.scalar_subquery()))
        .values(status=EmailStatus.SUPPRESSED, last_error="unsubscribed")
    )


def _consequences(user: User, source: str) -> list[Executable]:
    """What a new unsubscribe also changes: the user's queued promotions, and the
    suppression list (reason ``unsubscribe``: promotions only; a stronger reason stays)."""
    statements: list[Executable] = [_suppress_pending(user.id)]
    try:
        statements.append(suppress(user.email, SuppressionReason.UNSUBSCRIBE, source))
    except InvalidEmailAddress:  # an address the list cannot hold; unsubscribed_at still holds
        logger.warning(
            "user %s unsubscribed; %r cannot go on the suppression list", user.id, user.email
        )
    return statements


def _apply(user: User) -> Unsubscribed:
    since = user.unsubscribed_at
    if since is None:
        user.unsubscribed_at = datetime.now(UTC)
        return Unsubscribed(user.id, user.email, user.unsubscribed_at, already=False)
    return Unsubscribed(user.id, user.email, since, already=True)


def _keys(key: bytes | None, fallbacks: Sequence[bytes] | None) -> list[bytes]:
    settings = get_settings()
    return [
        key if key is not None else signing_key(settings),
        *(fallbacks if fallbacks is not None else fallback_keys(settings)),
    ]


def unsubscribe(
    session: Session,
    token: str,
    *,
    key: bytes | None = None,
    fallbacks: Sequence[bytes] | None = None,
) -> Unsubscribed:
    """Apply ``token``: the user gets no more promotions. Idempotent; never commits.

    Raises `InvalidUnsubscribeToken` for a malformed, altered or forged token.
    ``key`` and ``fallbacks`` default to the configured ones (`signing_key`,
    `fallback_keys`).
    """
    keys = _keys(key, fallbacks)
    user_id = token_user_id(token)
    user = _verify(keys, token, session.get(User, user_id, with_for_update=True))
    result = _apply(user)
    if not result.already:
        for statement in _consequences(user, LINK_SOURCE):
            session.execute(statement)
    return result


async def unsubscribe_async(
    session: AsyncSession,
    token: str,
    *,
    key: bytes | None = None,
    fallbacks: Sequence[bytes] | None = None,
) -> Unsubscribed:
    """`unsubscribe` for an `AsyncSession`."""
    keys = _keys(key, fallbacks)
    user_id = token_user_id(token)
    user = _verify(keys, token, await session.get(User, user_id, with_for_update=True))
    result = _apply(user)
    if not result.already:
        for statement in _consequences(user, LINK_SOURCE):
            await session.execute(statement)
    return result


def _user_by_email(session: Session, email: str) -> User:
    from jobs.accounts import user_by_email

    user = user_by_email(session, email, lock=True)
    if user is None:
        raise UnknownUser(f"no user with email {email.strip()!r}")
    return user


def unsubscribe_email(session: Session, email: str) -> Unsubscribed:
    """Unsubscribe the user with ``email`` (an operator's request); never commits."""
    user = _user_by_email(session, email)
    result = _apply(user)
    if not result.already:
        for statement in _consequences(user, OPERATOR_SOURCE):
            session.execute(statement)
    return result


def _resubscribe(session: Session, user: User) -> None:
    """Promotions again: the list's ``unsubscribe`` entry goes (other reasons stay)."""
    user.unsubscribed_at = None
    with contextlib.suppress(InvalidEmailAddress):  # an address the list cannot hold
        session.execute(remove(user.email, SuppressionReason.UNSUBSCRIBE))


def resubscribe_email(session: Session, email: str) -> bool:
    """The user with ``email`` gets promotions again; False if they were subscribed.
    Never commits."""
    user = _user_by_email(session, email)
    if user.unsubscribed_at is None:
        return False
    _resubscribe(session, user)
    return True


def resubscribe(session: Session, token: str, *, keys: Sequence[bytes]) -> bool:
    """Undo `unsubscribe` for the token's user; True if they were unsubscribed. Never commits.

    ``keys``: the signing key, then the fallbacks (`signing_key`, `fallback_keys`).
    """
    user_id = token_user_id(token)
    user = _verify(keys, token, session.get(User, user_id, with_for_update=True))
    was = user.unsubscribed_at is not None
    if was:
        _resubscribe(session, user)
    return was


def check_token(session: Session, token: str, *, keys: Sequence[bytes]) -> str:
    """The address ``token`` unsubscribes (changing nothing); `InvalidUnsubscribeToken` if bad."""
    user = _verify(keys, token, session.get(User, token_user_id(token)))
    return user.email

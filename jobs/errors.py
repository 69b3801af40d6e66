"""What a user of `jobs` must fix: one small hierarchy.

Transient trouble (a lost connection, an SMTP 4xx) is *not* here: it propagates
to procrastinate's retry machinery.
"""

from __future__ import annotations


def describe(exc: BaseException, limit: int = 1000) -> str:
    """``Type: message`` on one line, at most ``limit`` characters (ledger, results)."""
    message = " ".join(str(exc).split())
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


class JobsError(Exception):
    """Base class for errors the user must act on."""


class ConfigError(JobsError):
    """The settings are malformed; the message names each variable."""


class DatabaseUnreachable(JobsError):
    """PostgreSQL cannot be reached; the message names host and port."""


class InvalidEmailAddress(JobsError, ValueError):
    """An address that cannot be delivered to."""


class UnknownTemplate(JobsError, ValueError):
    """No such email template."""


class TemplateError(JobsError, ValueError):
    """A template failed to render (syntax error, missing variable)."""


class HeaderInjection(JobsError, ValueError):
    """A header value carries CR/LF or another control character."""


class SubjectTooLong(JobsError, ValueError):
    """A subject longer than the documented maximum (jobs.mail.message.MAX_SUBJECT_LENGTH)."""


class InvalidSchedule(JobsError, ValueError):
    """A send_at that is not timezone-aware, a negative delay, or both given."""


class InvalidContext(JobsError, ValueError):
    """A template context that cannot be stored (not JSON-serializable)."""


# --- Promotions ---------------------------------------------------


class InvalidUnsubscribeToken(JobsError, ValueError):
    """An unsubscribe token that is malformed, altered, forged or no longer matches."""


class UnknownUser(JobsError, ValueError):
    """No user has that email address."""


class UnknownCampaign(JobsError, ValueError):
    """No campaign has that name."""


class InvalidCampaign(JobsError, ValueError):
    """A campaign that cannot be stored (duplicate name, bad subject or link)."""


# Results
class ResultTooLarge(JobsError, ValueError):
    """A task result bigger than RESULT_MAX_BYTES: refused, never truncated."""


class ResultNotSerializable(JobsError, ValueError):
    """A task result that is not JSON (results are stored as jsonb, cached as JSON)."""


# Operations
class JobStateError(JobsError):
    """No such job, or it is not in a state that allows the operation (operations)."""

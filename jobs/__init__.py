"""Background email and scheduled bulk jobs on PostgreSQL.

The public API, for the application that produces work::

    from jobs import enqueue_email, register_user

Every name is imported on first use, so ``import jobs`` stays cheap and the
producer side never loads worker code (SMTP, metrics, Redis).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.accounts import register_user, register_user_async
    from jobs.errors import JobsError
    from jobs.mail.enqueue import enqueue_email, enqueue_email_async
    from jobs.promotions.unsubscribe import unsubscribe, unsubscribe_async
    from jobs.results.store import (
        get_result,
        get_result_async,
        store_result,
        store_result_async,
    )

__version__ = "0.1.0"

_EXPORTS = {
    "enqueue_email": "jobs.mail.enqueue",
    "enqueue_email_async": "jobs.mail.enqueue",
    "register_user": "jobs.accounts",
    "register_user_async": "jobs.accounts",
    "get_result": "jobs.results.store",
    "get_result_async": "jobs.results.store",
    "store_result": "jobs.results.store",
    "store_result_async": "jobs.results.store",
    "unsubscribe": "jobs.promotions.unsubscribe",
    "unsubscribe_async": "jobs.promotions.unsubscribe",
    "JobsError": "jobs.errors",
}

__all__ = [
    "JobsError",
    "enqueue_email",
    "enqueue_email_async",
    "get_result",
    "get_result_async",
    "register_user",
    "register_user_async",
    "store_result",
    "store_result_async",
    "unsubscribe",
    "unsubscribe_async",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

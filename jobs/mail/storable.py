"""What PostgreSQL can store, checked in Python before any statement runs.

A value the database would refuse (NUL in text, a lone surrogate, NaN in
jsonb, an id beyond bigint) would abort the caller's transaction with a raw
database error; here it is refused with a `ValueError` subclass of `JobsError`
instead, and the caller's transaction stays usable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jobs.errors import InvalidArgument, InvalidContext

BIGINT_MAX = 2**63 - 1
MAX_DEPTH = 64  # nesting of a template context
MAX_TEXT = 1_000_000  # characters in one text value


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as PostgreSQL text, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if len(value) > MAX_TEXT:
        return f"is longer than {MAX_TEXT} characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def check_text(name: str, value: object, *, optional: bool = False) -> str | None:
    """``value`` if it is storable text (or None when ``optional``); else `InvalidArgument`."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, not {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidArgument(f"{name} {problem}")
    return value


def check_id(name: str, value: object, *, optional: bool = False) -> int | None:
    """``value`` if it is a positive bigint (or None when ``optional``); else `InvalidArgument`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, not {type(value).__name__}")
    if not 1 <= value <= BIGINT_MAX:
        raise InvalidArgument(f"{name} must be between 1 and {BIGINT_MAX}")
    return value


def check_context(context: object) -> dict[str, Any]:
    """A template context that jsonb stores as given: string keys, finite numbers,
    storable text, at most `MAX_DEPTH` levels; else `InvalidContext`."""
    if not isinstance(context, Mapping):
        raise InvalidContext(f"email context must be a mapping, not {type(context).__name__}")
    _check_json(context, "context", 0)
    return dict(context)


def _check_json(value: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidContext(f"email context is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= 10**100:  # jsonb takes it, but no template needs it
            raise InvalidContext(f"{path} is an integer of more than 100 digits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidContext(f"{path} is {value!r}: JSON has no NaN or infinity")
        return
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise InvalidContext(f"{path} {problem}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidContext(f"{path} has a key of type {type(key).__name__}: use str")
            problem = text_problem(key)
            if problem is not None:
                raise InvalidContext(f"a key in {path} {problem}")
            _check_json(item, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise InvalidContext(
        f"{path} is a {type(value).__name__}: email context must be JSON "
        "(str, int, float, bool, None, list, dict)"
    )

"""Email templates: ``name.html`` + ``name.txt`` pairs rendered by jinja2.

The text template may set the default subject with ``{% set subject = ... %}``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from jobs.errors import TemplateError, UnknownTemplate

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    html: str
    text: str


@functools.cache
def _environment(directories: tuple[Path, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in directories]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )


def search_path(extra: Path | None = None) -> tuple[Path, ...]:
    """The directories searched, the application's own (if any) first."""
    return (extra, BUILTIN_DIR) if extra is not None else (BUILTIN_DIR,)


def ensure_template(name: str, directories: Sequence[Path]) -> None:
    """Raise `UnknownTemplate` unless both ``name.html`` and ``name.txt`` exist."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnknownTemplate(
            f"invalid template name {name!r}: use lowercase letters, digits, '-' and '_'"
        )
    key = (name, tuple(directories))
    if key in _found:
        return
    for suffix in ("html", "txt"):
        if not any((d / f"{name}.{suffix}").is_file() for d in directories):
            where = ", ".join(str(d) for d in directories)
            raise UnknownTemplate(f"unknown email template {name!r}: no {name}.{suffix} in {where}")
    _found.add(key)


# (name, directories) found once: like the compiled templates (auto_reload=False),
# the answer is kept for the life of the process; a worker renders thousands.
_found: set[tuple[str, tuple[Path, ...]]] = set()


def compile_all(directories: Sequence[Path]) -> int:
    """Compile every template found in ``directories`` now (a worker's start), rather
    than on the first email that uses each; a broken one is left for that email to
    report. Returns how many compiled."""
    env = _environment(tuple(directories))
    compiled = 0
    for name in env.list_templates(extensions=("html", "txt")):
        try:
            env.get_template(name)
        except jinja2.TemplateError:
            continue
        compiled += 1
    return compiled


def render(name: str, context: Mapping[str, Any], directories: Sequence[Path]) -> Rendered:
    """Render both parts; any jinja error becomes a `TemplateError` naming the template."""
    ensure_template(name, directories)
    env = _environment(tuple(directories))
    try:
        text_module = env.get_template(f"{name}.txt").make_module(dict(context))
        html = env.get_template(f"{name}.html").render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template {exc.name or name!r} line {exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {name!r}: {exc}") from None
    subject = getattr(text_module, "subject", None)
    return Rendered(subject=str(subject) if subject else None, html=html, text=str(text_module))

"""What every page shares: the app's `Web` configuration and `render`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from jobs.settings import Settings
from jobs.web.security import CSRF_COOKIE, Operators, csrf_token

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Web:
    """What every page needs; built once by `create_app`, kept in ``app.state.web``."""

    settings: Settings
    sessions: sessionmaker[Session]
    key: bytes  # signs (the resubscribe proof)
    keys: tuple[bytes, ...]  # verify unsubscribe tokens: the signing key, then the fallbacks
    operators: Operators
    templates: Jinja2Templates
    trusted_origins: tuple[str, ...]  # netlocs besides the Host header (WEB_BASE_URL's)
    with_dashboard: bool


def web(request: Request) -> Web:
    config: Web = request.app.state.web
    return config


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """A page; the CSRF cookie is set the first time, for the forms on it."""
    token, new = csrf_token(request)
    response = web(request).templates.TemplateResponse(
        request,
        template,
        {"done": None, "error": None, **context, "csrf": token},
        status_code=status_code,
    )
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path=path_for(request, "home").path,  # the whole app, wherever it is mounted
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


def path_for(request: Request, name: str, /, **path_params: Any) -> URL:
    """The URL of route ``name`` as an absolute path (with the mount point, without scheme
    and host): right behind a proxy that terminates TLS, whatever Host and scheme it sends."""
    return URL(request.url_for(name, **path_params).path)


@jinja2.pass_context
def _url_for(context: dict[str, Any], name: str, /, **path_params: Any) -> URL:
    return path_for(context["request"], name, **path_params)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value is text, whatever it holds
        undefined=jinja2.StrictUndefined,
    )
    env.globals["url_for"] = _url_for  # Jinja2Templates keeps it (setdefault)
    return env

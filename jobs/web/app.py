"""`create_app`: the Starlette application (public unsubscribe and webhooks, operator
dashboard)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from jobs.db import database_url, session_factory
from jobs.promotions.unsubscribe import fallback_keys, signing_key
from jobs.settings import Settings, get_settings
from jobs.web import dashboard, unsubscribe
from jobs.web.pages import HERE, Web, environment, path_for, web
from jobs.web.security import AuthCheck, BasicCredentials, Operators, SecurityHeaders
from jobs.web.webhooks import webhook_routes

logger = logging.getLogger(__name__)


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    page = web(request).templates.get_template("error.html")
    body = page.render(status_code=exc.status_code, detail=exc.detail)
    return HTMLResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _home(request: Request) -> Response:
    if not web(request).with_dashboard:
        raise HTTPException(404, "Nothing here.")
    return RedirectResponse(str(path_for(request, "overview")), status_code=303)


def create_app(
    settings: Settings | None = None,
    *,
    auth: AuthCheck | None = None,
    routes: Sequence[BaseRoute] = (),
    anonymous: bool = False,
    with_unsubscribe: bool = True,
    with_dashboard: bool = True,
    with_webhooks: bool = True,
) -> Starlette:
    """The ASGI application: ``/unsubscribe`` and ``/webhooks/*`` (public, each
    authenticated by its own token, signature or secret), ``/dashboard`` (operators).

    ``with_unsubscribe`` / ``with_webhooks`` / ``with_dashboard``: serve only one side,
    e.g. the public endpoints on the public application and the dashboard on an
    internal one.
    ``auth``: a check of the host application (``request -> bool``, sync or async) that
    decides who is an operator; without it the dashboard asks for WEB_USERNAME and
    WEB_PASSWORD (HTTP Basic). ``anonymous``: no credentials at all (`jobs web` allows it
    on a loopback address only). ``routes``: more public routes, mounted as they are
    (e.g. webhook endpoints that authenticate themselves; no CSRF check applies).
    """
    settings = settings or get_settings()
    key = signing_key(settings)
    basic = None
    if settings.WEB_USERNAME is not None and settings.WEB_PASSWORD is not None:
        basic = BasicCredentials(settings.WEB_USERNAME, settings.WEB_PASSWORD.get_secret_value())
    trusted: tuple[str, ...] = ()
    if settings.WEB_BASE_URL is not None:
        trusted = (urlsplit(str(settings.WEB_BASE_URL)).netloc.lower(),)
    config = Web(
        settings=settings,
        sessions=session_factory(database_url(settings)),
        key=key,
        keys=(key, *fallback_keys(settings)),
        operators=Operators(auth=auth, basic=basic, anonymous=anonymous),
        templates=Jinja2Templates(env=environment()),
        trusted_origins=trusted,
        with_dashboard=with_dashboard,
    )
    app = Starlette(
        routes=[
            Route("/", _home, name="home"),
            *(unsubscribe.routes() if with_unsubscribe else ()),
            *(webhook_routes() if with_webhooks else ()),
            *([Mount("/dashboard", routes=dashboard.routes())] if with_dashboard else ()),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            # more public routes that authenticate themselves: no operator check and no
            # CSRF check apply outside /dashboard
            *routes,
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: _error},
    )
    app.state.web = config
    return app

"""What keeps the web side safe: response headers (CSP and friends), operator
credentials (HTTP Basic, or the host application's check), CSRF tokens and the
same-origin check on every state-changing form.

CSRF tokens are double-submit: a random cookie, and the same value in a hidden field
of every form (a page on another origin can neither read the cookie nor the page).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages are ours alone: a stylesheet from our own origin, no script, no frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
CSRF_COOKIE = "jobs_csrf"
CSRF_FIELD = "csrf"

AuthCheck = Callable[[Request], bool | Awaitable[bool]]


class SecurityHeaders:
    """ASGI middleware: every response carries `HEADERS` (a response's own CSP wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BasicCredentials:
    """WEB_USERNAME / WEB_PASSWORD, compared in constant time."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode()
        self._password = password.encode()

    def check(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        username, colon, password = decoded.partition(b":")
        # both compared, always: the time does not tell which one was wrong
        same_user = hmac.compare_digest(username, self._username)
        same_password = hmac.compare_digest(password, self._password)
        return bool(colon) and same_user and same_password


class Operators:
    """Who may see the dashboard: the host app's check, Basic credentials, or (only when
    `jobs web` listens on loopback without credentials) anyone who can connect."""

    def __init__(
        self, *, auth: AuthCheck | None, basic: BasicCredentials | None, anonymous: bool
    ) -> None:
        self._auth = auth
        self._basic = basic
        self._anonymous = anonymous

    async def require(self, request: Request) -> None:
        if self._auth is not None:
            allowed = self._auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise HTTPException(403, "You are not allowed to see the jobs dashboard.")
            return
        if self._basic is not None:
            if not self._basic.check(request):
                raise HTTPException(
                    401,
                    "Credentials required.",
                    headers={"WWW-Authenticate": 'Basic realm="jobs", charset="UTF-8"'},
                )
            return
        if not self._anonymous:
            raise HTTPException(
                403,
                "The dashboard is disabled: set WEB_USERNAME and WEB_PASSWORD "
                "(or pass auth= to jobs.web.create_app).",
            )


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (then set the cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def same_origin(request: Request, allowed: tuple[str, ...] = ()) -> bool:
    """Whether Origin (or, without it, Referer) names the host the request was sent to."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    netloc = urlsplit(source).netloc.lower()
    host = request.headers.get("host", "").lower()
    return bool(netloc) and (netloc == host or netloc in allowed)


async def checked_form(request: Request, allowed: tuple[str, ...] = ()) -> FormData:
    """The form of a state-changing request, after the same-origin and CSRF checks (403)."""
    if not same_origin(request, allowed):
        raise HTTPException(403, "Cross-origin request refused.")
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not (isinstance(sent, str) and cookie and hmac.compare_digest(sent, cookie)):
        raise HTTPException(403, "Missing or wrong CSRF token: reload the page and try again.")
    return form


def token_proof(key: bytes, purpose: str, value: str) -> str:
    """A proof bound to ``value`` (e.g. the resubscribe button's, bound to the token)."""
    digest = hmac.digest(key, f"{purpose}:{value}".encode(), "sha256")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

"""The public unsubscribe endpoint (RFC 8058 one-click) and its resubscribe button.

GET shows a confirmation page and changes nothing (mail scanners fetch links).
POST unsubscribes, idempotently: a mail provider's one-click POST carries
``List-Unsubscribe=One-Click`` and no CSRF token, because the signed token in the
URL is what authenticates it. Resubscribing needs a proof bound to the token, shown
only on the success page, and a same-origin request.
"""

from __future__ import annotations

import hmac

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobs.errors import InvalidUnsubscribeToken
from jobs.promotions.unsubscribe import (
    Unsubscribed,
    check_token,
    resubscribe,
    token_user_id,
    unsubscribe,
)
from jobs.web.pages import render, web
from jobs.web.security import same_origin, token_proof

_RESUBSCRIBE = "resubscribe"
_BAD_TOKEN = (
    "This unsubscribe link is not valid: it may be incomplete, altered, or for an "
    "address that has changed. Copy the whole link from the email, or use the link "
    "in a more recent one."
)


def routes() -> list[BaseRoute]:
    return [
        Route("/unsubscribe", page, methods=["GET", "POST"], name="unsubscribe"),
        Route("/unsubscribe/resubscribe", resubscribe_page, methods=["POST"], name="resubscribe"),
    ]


async def _token(request: Request) -> str:
    token = request.query_params.get("token")
    if token is None and request.method == "POST":
        form = await request.form()
        value = form.get("token")
        token = value if isinstance(value, str) else None
    try:
        token_user_id(token or "")  # malformed or absurd: refused before any query
    except InvalidUnsubscribeToken:
        raise HTTPException(400, _BAD_TOKEN) from None
    assert token is not None
    return token


async def page(request: Request) -> Response:
    token = await _token(request)
    config = web(request)
    if request.method == "GET":

        def check() -> str:
            with config.sessions() as session:
                return check_token(session, token, keys=config.keys)

        try:
            email = await run_in_threadpool(check)
        except InvalidUnsubscribeToken:
            raise HTTPException(400, _BAD_TOKEN) from None
        return render(request, "unsubscribe.html", {"token": token, "email": email})

    def apply() -> Unsubscribed:
        with config.sessions() as session, session.begin():
            return unsubscribe(session, token, key=config.keys[0], fallbacks=config.keys[1:])

    try:
        result = await run_in_threadpool(apply)
    except InvalidUnsubscribeToken:
        raise HTTPException(400, _BAD_TOKEN) from None
    return render(
        request,
        "unsubscribed.html",
        {
            "token": token,
            "email": result.email,
            "already": result.already,
            "proof": token_proof(config.key, _RESUBSCRIBE, token),
        },
    )


async def resubscribe_page(request: Request) -> Response:
    config = web(request)
    if not same_origin(request, config.trusted_origins):
        raise HTTPException(403, "Cross-origin request refused.")
    token = await _token(request)
    form = await request.form()
    proof = form.get("proof")
    expected = token_proof(config.key, _RESUBSCRIBE, token)
    if not (isinstance(proof, str) and hmac.compare_digest(proof.encode(), expected.encode())):
        raise HTTPException(403, "This resubscribe button is not valid for this link.")

    def apply() -> None:
        with config.sessions() as session, session.begin():
            resubscribe(session, token, keys=config.keys)

    try:
        await run_in_threadpool(apply)
    except InvalidUnsubscribeToken:
        raise HTTPException(400, _BAD_TOKEN) from None
    return render(request, "resubscribed.html", {"token": token})

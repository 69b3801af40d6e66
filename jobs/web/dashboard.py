"""The operator dashboard: overview, jobs, one job, emails, campaigns, and the actions
(retry, cancel, retry every failed job of a filter, enable/disable a campaign).

Every page needs an operator (`jobs.web.security.Operators`); every action is a POST
that passes the same-origin and CSRF checks, then redirects (303) to a page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from croniter import croniter
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL, FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from jobs.errors import JobsError, JobStateError, UnknownCampaign
from jobs.mail.config import MailConfig
from jobs.mail.preview import preview_campaign
from jobs.ops import browse, requeue, status
from jobs.ops import queries as monitor
from jobs.promotions.campaigns import get_campaign, list_campaigns, set_active
from jobs.promotions.promote import promotion_config
from jobs.tasks import QUEUES
from jobs.web import charts
from jobs.web.pages import path_for, render, web
from jobs.web.security import checked_form

Handler = Callable[[Request], Awaitable[Response]]
PAGE_SIZE = 50


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, name="overview"),
        Route("/jobs", jobs_page, name="jobs"),
        Route("/jobs/retry-failed", retry_failed, methods=["POST"], name="retry_failed"),
        Route("/jobs/{job_id:int}", job_page, name="job"),
        Route("/jobs/{job_id:int}/retry", retry_job, methods=["POST"], name="retry_job"),
        Route("/jobs/{job_id:int}/cancel", cancel_job, methods=["POST"], name="cancel_job"),
        Route("/emails", emails_page, name="emails"),
        Route("/campaigns", campaigns_page, name="campaigns"),
        Route("/campaigns/{name}/preview", preview_page, name="preview"),
        Route("/campaigns/{name}/preview.html", preview_html, name="preview_html"),
        Route("/campaigns/{name}/{action:str}", campaign_action, methods=["POST"], name="campaign"),
    ]


async def _operator(request: Request) -> None:
    await web(request).operators.require(request)


async def _action(request: Request) -> FormData:
    await _operator(request)
    return await checked_form(request, web(request).trusted_origins)


def _read(request: Request, work: Callable[[Session], Any]) -> Awaitable[Any]:
    """Run ``work`` with a session in a worker thread (SQLAlchemy here is synchronous)."""

    def run() -> Any:
        with web(request).sessions() as session:
            return work(session)

    return run_in_threadpool(run)


def _write(request: Request, work: Callable[[Session], Any]) -> Awaitable[Any]:
    """``work`` in one transaction, committed when it returns."""

    def run() -> Any:
        with web(request).sessions() as session, session.begin():
            return work(session)

    return run_in_threadpool(run)


def _back(url: URL | str, **notice: str) -> RedirectResponse:
    target = str(url)
    if notice:
        target += ("&" if "?" in target else "?") + urlencode(notice)
    return RedirectResponse(target, status_code=303)


def _notice(request: Request) -> dict[str, str | None]:
    return {"done": request.query_params.get("done"), "error": request.query_params.get("error")}


# -- overview ------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    await _operator(request)
    settings = web(request).settings

    def collect(session: Session) -> dict[str, Any]:
        minutes = monitor.throughput(session)
        snapshot = status.collect(
            session, stalled_after=settings.WORKER_STALLED_AFTER, queues=QUEUES, minutes=minutes
        )
        now = datetime.now(UTC)
        return {
            "status": snapshot,
            "chart": charts.throughput(minutes, now),
            "campaigns": [c for c in list_campaigns(session) if c.active],
            "next_tick": croniter(settings.PROMOTION_CRON, now).get_next(datetime),
            "schedule_enabled": settings.PROMOTION_SCHEDULE_ENABLED,
            "cron": settings.PROMOTION_CRON,
        }

    return render(request, "overview.html", {**await _read(request, collect), **_notice(request)})


# -- jobs ----------------------------------------------------------------------------


def _filters(values: Any) -> tuple[browse.JobFilter, str]:
    """The jobs filter from a query string or form; 400 on nonsense."""
    age_text = (values.get("age") or "").strip()
    try:
        age: timedelta | None = requeue.parse_duration(age_text) if age_text else None
        return (
            browse.JobFilter(
                queue=(values.get("queue") or "").strip() or None,
                task=(values.get("task") or "").strip() or None,
                status=(values.get("status") or "").strip() or None,
                age=age,
            ),
            age_text,
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _int(value: str | None, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise HTTPException(400, f"{name} must be a positive integer")
    return int(value)


def _filter_query(filters: browse.JobFilter, age: str) -> dict[str, str]:
    values = {"queue": filters.queue, "task": filters.task, "status": filters.status, "age": age}
    return {k: v for k, v in values.items() if v}


async def jobs_page(request: Request) -> Response:
    await _operator(request)
    filters, age = _filters(request.query_params)
    before = _int(request.query_params.get("before"), "before")
    rows = await _read(
        request, lambda s: browse.list_jobs(s, filters, limit=PAGE_SIZE + 1, before_id=before)
    )
    query = _filter_query(filters, age)
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = str(path_for(request, "jobs").include_query_params(**query, before=rows[-1].id))
    context = {
        "rows": rows,
        "filters": filters,
        "age": age,
        "query": query,
        "next_url": next_url,
        "statuses": browse.JOB_STATUSES,
        "queues": QUEUES,
        **_notice(request),
    }
    return render(request, "jobs.html", context)


async def retry_failed(request: Request) -> Response:
    form = await _action(request)
    filters, age = _filters(form)
    result: requeue.Requeued = await _write(
        request,
        lambda s: requeue.retry_failed(
            s, queue=filters.queue, task=filters.task, since=filters.age
        ),
    )
    query = {**_filter_query(filters, age), "status": "failed"}
    done = f"re-queued {len(result.jobs)} failed job(s), {result.emails_reset} email(s) reset"
    if result.skipped:
        done += f"; {len(result.skipped)} skipped (an identical job is already waiting)"
    return _back(path_for(request, "jobs").include_query_params(**query), done=done)


async def job_page(request: Request) -> Response:
    await _operator(request)
    job_id = int(request.path_params["job_id"])
    detail = await _read(request, lambda s: browse.show_job(s, job_id))
    if detail is None:
        raise HTTPException(404, f"There is no job {job_id} (never deferred, or pruned).")
    return render(request, "job.html", {"job": detail, **_notice(request)})


async def _job_action(request: Request, work: Callable[[Session, int], str]) -> Response:
    await _action(request)
    job_id = int(request.path_params["job_id"])
    try:
        done = await _write(request, lambda s: work(s, job_id))
    except JobStateError as exc:
        return _back(path_for(request, "job", job_id=job_id), error=str(exc))
    return _back(path_for(request, "job", job_id=job_id), done=done)


async def retry_job(request: Request) -> Response:
    def retry(session: Session, job_id: int) -> str:
        job = requeue.retry_job(session, job_id)
        return f"job {job_id} re-queued ({job.emails_reset} email(s) back to pending)"

    return await _job_action(request, retry)


async def cancel_job(request: Request) -> Response:
    return await _job_action(
        request, lambda s, job_id: f"job {job_id}: {requeue.cancel(s, job_id)}"
    )


# -- emails --------------------------------------------------------------------------


async def emails_page(request: Request) -> Response:
    await _operator(request)
    params = request.query_params
    search = {
        name: (params.get(name) or "").strip() or None
        for name in ("to", "status", "kind", "campaign")
    }
    before = _int(params.get("before"), "before")
    try:
        rows = await _read(
            request,
            lambda s: browse.search_emails(s, **search, before_id=before, limit=PAGE_SIZE + 1),
        )
    except browse.BrowseError as exc:
        raise HTTPException(400, str(exc)) from None
    query = {k: v for k, v in search.items() if v}
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = str(
            path_for(request, "emails").include_query_params(**query, before=rows[-1].id)
        )
    context = {"rows": rows, "search": search, "next_url": next_url, "statuses": _EMAIL_STATUSES}
    return render(request, "emails.html", context)


_EMAIL_STATUSES = ("pending", "sent", "failed", "suppressed")


# -- campaigns -----------------------------------------------------------------------


async def campaigns_page(request: Request) -> Response:
    await _operator(request)

    def collect(session: Session) -> dict[str, Any]:
        return {
            "campaigns": list(list_campaigns(session)),
            "runs": monitor.promotion_runs(session, limit=20),
        }

    return render(request, "campaigns.html", {**await _read(request, collect), **_notice(request)})


async def campaign_action(request: Request) -> Response:
    await _action(request)
    name = str(request.path_params["name"])
    action = str(request.path_params["action"])
    if action not in ("enable", "disable"):
        raise HTTPException(404, "No such action.")
    try:
        await _write(request, lambda s: set_active(s, name, action == "enable"))
    except JobsError as exc:
        return _back(path_for(request, "campaigns"), error=str(exc))
    return _back(path_for(request, "campaigns"), done=f"campaign {name!r} {action}d")


def _preview(request: Request, session: Session, name: str) -> dict[str, Any]:
    """The campaign's promotion as a sample recipient gets it (`jobs preview --campaign`)."""
    settings = web(request).settings
    try:
        campaign = get_campaign(session, name)
        email = preview_campaign(
            campaign,
            promotion_config(settings, key=b""),  # signs nothing: a sample token
            MailConfig.from_settings(settings),
            to="ann@example.com",
        )
    except UnknownCampaign as exc:
        raise HTTPException(404, str(exc)) from None
    except JobsError as exc:
        raise HTTPException(500, f"The promotion does not render: {exc}") from None
    return {"campaign": campaign, "email": email}


async def preview_page(request: Request) -> Response:
    await _operator(request)
    name = str(request.path_params["name"])
    return render(
        request, "preview.html", await _read(request, lambda s: _preview(request, s, name))
    )


# The email's own HTML, as a mail client shows it: sandboxed, no script, its inline styles.
_EMAIL_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


async def preview_html(request: Request) -> Response:
    await _operator(request)
    name = str(request.path_params["name"])
    preview = await _read(request, lambda s: _preview(request, s, name))
    return Response(
        preview["email"].html,
        media_type="text/html",
        headers={"content-security-policy": _EMAIL_CSP},
    )

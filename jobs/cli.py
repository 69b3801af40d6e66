"""The `jobs` command. Logging is configured here, and only here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.errors import JobsError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from jobs.mail.preview import Preview
    from jobs.settings import Settings

logger = logging.getLogger(__name__)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for noisy in ("procrastinate", "alembic", "pgserver", "mail.log"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _url() -> str:
    from jobs.db import check_connection, database_url
    from jobs.settings import get_settings

    url = database_url(get_settings())
    check_connection(url)
    return url


def cmd_migrate(args: argparse.Namespace) -> int:
    from jobs.db.migrations import migrate

    before, after = migrate(_url())
    if before == after:
        print(f"database already at the latest revision ({after})")
    else:
        print(f"database migrated from {before or 'empty'} to {after}")
    return 0


def _check_task_settings(settings: Settings, queues: Sequence[str] | None) -> None:
    """Refuse to start on settings every job would fail on, rather than fail each job."""
    from jobs.mail.config import MailConfig
    from jobs.promotions.promote import promotion_config

    if queues is None or "email" in queues:
        MailConfig.from_settings(settings)  # e.g. a login over plain text
        MailConfig.for_stream(settings, bulk=True)
    if settings.PROMOTION_SCHEDULE_ENABLED and (queues is None or "default" in queues):
        promotion_config(settings)  # e.g. no SECRET_KEY to sign unsubscribe links
        if settings.PROMOTION_POSTAL_ADDRESS is None:
            logger.warning(
                "promotions are enabled but PROMOTION_POSTAL_ADDRESS is unset: commercial "
                "email must show the sender's postal address (CAN-SPAM)"
            )


def cmd_worker(args: argparse.Namespace) -> int:
    from procrastinate.exceptions import ConnectorException

    from jobs.db import describe_server
    from jobs.errors import DatabaseUnreachable
    from jobs.settings import get_settings
    from jobs.worker.operations import Operations
    from jobs.worker.run import run_worker

    url = _url()
    settings = get_settings()
    _check_task_settings(settings, args.queues)
    concurrency = args.concurrency or settings.WORKER_CONCURRENCY
    ops = Operations.from_settings(settings, url)
    try:
        asyncio.run(
            run_worker(queues=args.queues, concurrency=concurrency, drain=args.drain, ops=ops)
        )
    except ConnectorException as exc:  # the database went away under a running worker
        cause = str(exc.__cause__ or exc).strip().splitlines() or ["connection lost"]
        raise DatabaseUnreachable(
            f"the worker lost PostgreSQL at {describe_server(url)}: {cause[0]}"
        ) from None
    return 0


# --- Operations: status, retry-failed, cancel, healthcheck --------------------


def cmd_status(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.ops import status
    from jobs.ops import status_text as screen
    from jobs.settings import get_settings
    from jobs.tasks import QUEUES

    url = _url()
    with session_factory(url)() as session:
        snapshot = status.collect(
            session, stalled_after=get_settings().WORKER_STALLED_AFTER, queues=QUEUES
        )
    print(status.as_json(snapshot) if args.json else screen.render(snapshot))
    return 0


def _duration(value: str) -> object:
    from jobs.ops.requeue import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.ops import requeue

    url = _url()
    with session_factory(url)() as session:
        result = requeue.retry_failed(session, queue=args.queue, task=args.task, since=args.since)
        if args.dry_run:
            session.rollback()
        else:
            session.commit()
    verb, went = ("would re-queue", "would go") if args.dry_run else ("re-queued", "went")
    for job in result.jobs:
        print(f"  job {job.id:>8}  {job.queue:<10} {job.task:<28} emails reset: {job.emails_reset}")
    print(
        f"{verb} {len(result.jobs)} failed job(s); "
        f"{result.emails_reset} failed email(s) {went} back to pending"
    )
    if result.skipped:
        ids = ", ".join(map(str, result.skipped))
        print(f"skipped (an identical job is already waiting): {ids}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.ops import requeue

    url = _url()
    with session_factory(url)() as session, session.begin():
        outcome = requeue.cancel(session, args.job_id)
    print(f"job {args.job_id}: {outcome}")
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from jobs.errors import ConfigError
    from jobs.settings import get_settings

    settings = get_settings()
    if not settings.WORKER_HTTP_PORT:
        raise ConfigError("WORKER_HTTP_PORT is 0: the worker serves no /healthz to check")
    host = settings.WORKER_HTTP_HOST
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.WORKER_HTTP_PORT}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            print(response.read().decode().strip())
            return 0
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {exc.read().decode().strip()}", file=sys.stderr)
    except OSError as exc:
        print(f"unhealthy: no answer from {url}: {exc}", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.dev.demo import run_demo

    return run_demo(args.database)


# --- Promotions ---------------------------------------------------


def cmd_campaigns(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.promotions import campaigns

    with session_factory(_url())() as session, session.begin():
        if args.action == "show":
            _show_campaign(session, args.name)
            return 0
        if args.action == "add":
            campaigns.add_campaign(
                session,
                name=args.name,
                subject=args.subject,
                title=args.title,
                content=args.content,
                link_path=args.link,
                active=args.enable,
            )
            state = "enabled" if args.enable else f"disabled: `jobs campaigns enable {args.name}`"
            print(f"campaign {args.name!r} added ({state})")
        elif args.action == "edit":
            campaigns.edit_campaign(
                session,
                args.name,
                subject=args.subject,
                title=args.title,
                content=args.content,
                link_path=args.link,
            )
            print(f"campaign {args.name!r} changed")
        elif args.action == "delete":
            campaigns.delete_campaign(session, args.name)
            print(f"campaign {args.name!r} deleted")
        elif args.action in ("enable", "disable"):
            campaigns.set_active(session, args.name, args.action == "enable")
            print(f"campaign {args.name!r} {args.action}d")
        for c in campaigns.list_campaigns(session):
            state = "active  " if c.active else "disabled"
            print(f"{c.name:<20} {state} {c.link_path:<20} {c.subject}")
    return 0


def _show_campaign(session: Session, name: str) -> None:
    from jobs.promotions.campaigns import get_campaign, link_url, run_count
    from jobs.settings import get_settings

    campaign = get_campaign(session, name)
    frontend = str(get_settings().FRONTEND_URL).rstrip("/")
    for label, value in (
        ("name", campaign.name),
        ("state", "active" if campaign.active else "disabled"),
        ("subject", campaign.subject),
        ("title", campaign.title),
        ("content", campaign.content),
        ("link", f"{campaign.link_path} -> {link_url(frontend, campaign.link_path)}"),
        ("created", campaign.created_at.isoformat(timespec="seconds")),
        ("runs", str(run_count(session, campaign))),
    ):
        print(f"{label + ':':<9} {value}")


def _context(value: str | None) -> dict[str, Any]:
    import json

    from jobs.errors import InvalidContext

    if value is None:
        return {}
    try:
        context = json.loads(value)
    except ValueError as exc:
        raise InvalidContext(f"--context is not JSON: {exc}") from None
    if not isinstance(context, dict):
        raise InvalidContext('--context must be a JSON object, e.g. \'{"username": "Ann"}\'')
    return context


def _render_for(args: argparse.Namespace, to: str, *, sign: bool = False) -> Preview:
    """What `preview` and `send-test` show or send: a template, or a campaign's promotion.

    With ``sign``, a promotion to an existing user carries that user's real
    unsubscribe link; otherwise its links carry a sample token.
    """
    from jobs.mail.config import MailConfig
    from jobs.mail.preview import preview, preview_campaign
    from jobs.settings import get_settings

    settings = get_settings()
    mail = MailConfig.from_settings(settings)
    if args.campaign is None:
        return preview(args.template, _context(args.context), mail, to=to)
    from jobs.accounts import user_by_email
    from jobs.db import session_factory
    from jobs.promotions.campaigns import get_campaign
    from jobs.promotions.promote import promotion_config
    from jobs.promotions.unsubscribe import make_token, signing_key

    with session_factory(_url())() as session:
        campaign = get_campaign(session, args.campaign)
        user = user_by_email(session, to) if sign else None
    config = promotion_config(settings, key=b"")  # signs nothing: tokens are made below
    template, context = args.template or "promotion", _context(args.context)
    if user is None:  # a sample token
        return preview_campaign(campaign, config, mail, to=to, template=template, context=context)
    return preview_campaign(
        campaign,
        config,
        mail,
        to=to,
        username=user.username,
        token=make_token(signing_key(settings), user.id, user.email),
        template=template,
        context=context,
    )


def cmd_preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.template is None and args.campaign is None:
        print("jobs: error: give a TEMPLATE or --campaign NAME", file=sys.stderr)
        return 2
    shown = _render_for(args, args.to)
    if args.out is None:
        print(f"Subject: {shown.subject}\n\n--- text ---\n{shown.text}\n--- html ---\n{shown.html}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.campaign or args.template
    (out / f"{name}.subject.txt").write_text(shown.subject + "\n", encoding="utf-8")
    (out / f"{name}.txt").write_text(shown.text, encoding="utf-8")
    (out / f"{name}.html").write_text(shown.html, encoding="utf-8")
    (out / f"{name}.eml").write_bytes(shown.eml)
    print(f"subject: {shown.subject}")
    print(f"wrote {name}.subject.txt, {name}.txt, {name}.html and {name}.eml in {out}")
    return 0


def cmd_send_test(args: argparse.Namespace) -> int:
    from jobs.mail import smtp
    from jobs.mail.config import MailConfig
    from jobs.mail.preview import send_now
    from jobs.settings import get_settings

    shown = _render_for(args, args.to, sign=True)
    mail = MailConfig.from_settings(get_settings())
    try:
        answer = asyncio.run(send_now(mail, shown.message))
    except (smtp.Rejected, smtp.Deferred) as exc:
        print(f"jobs: error: {mail.smtp.address} refused the message: {exc}", file=sys.stderr)
        return 1
    except smtp.TRANSIENT_ERRORS as exc:
        print(f"jobs: error: could not send through {mail.smtp.address}: {exc}", file=sys.stderr)
        return 1
    print(f"sent {shown.subject!r} to {shown.message.recipient} through {mail.smtp.address}")
    print(f"server answered: {answer}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from jobs.promotions.schedule import latest_tick
    from jobs.settings import get_settings

    settings = get_settings()
    url = _url()
    if args.resume is not None or args.cancel is not None:
        return asyncio.run(_resume_or_cancel(url, args.resume, args.cancel))
    period = latest_tick(settings.PROMOTION_CRON, datetime.now(UTC))
    print(
        f"period {period.isoformat()} (latest tick of PROMOTION_CRON {settings.PROMOTION_CRON!r})"
    )
    return asyncio.run(_promote(url, period, args.campaign, args.dry_run))


async def _promote(url: str, period: datetime, campaign: str | None, dry_run: bool) -> int:
    from jobs.db import async_session_factory, dispose_engines
    from jobs.promotions.progress import FanOutProgress
    from jobs.promotions.promote import count_recipients, promotion_config, send_promotions
    from jobs.settings import get_settings

    sessions = async_session_factory(url)
    try:
        config = None if dry_run else promotion_config(get_settings())
        totals = await count_recipients(sessions, period=period, campaign=campaign)
        if not totals:
            print("no active campaign: nothing to send (`jobs campaigns list`)")
            return 0
        if config is None:
            for name, recipients in totals.items():
                print(f"{name}: {recipients} recipient(s) to queue (dry run: nothing written)")
            return 0
        progress = FanOutProgress(totals, sys.stderr)
        summaries = await send_promotions(
            sessions, period=period, config=config, campaign=campaign, on_chunk=progress
        )
        progress.finish()
    finally:
        await dispose_engines()
    for summary in summaries:
        print(f"{summary.campaign}: " + ", ".join(f"{k} {v}" for k, v in summary.as_dict().items()))
    return 0


async def _resume_or_cancel(url: str, resume: int | None, cancel: int | None) -> int:
    from jobs.db import async_session_factory, dispose_engines
    from jobs.promotions.promote import cancel_paused, promotion_config, resume_paused
    from jobs.settings import get_settings

    sessions = async_session_factory(url)
    try:
        if cancel is not None:
            failed = await cancel_paused(sessions, cancel)
            print(f"promotion run {cancel} cancelled; {failed} pending email(s) will not be sent")
            return 0
        assert resume is not None
        summary, requeued = await resume_paused(sessions, resume, promotion_config(get_settings()))
    finally:
        await dispose_engines()
    print(f"promotion run {resume} resumed; {requeued} pending email(s) queued again")
    print(f"{summary.campaign}: " + ", ".join(f"{k} {v}" for k, v in summary.as_dict().items()))
    return 0


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.promotions.unsubscribe import (
        fallback_keys,
        signing_key,
        token_from,
        unsubscribe,
        unsubscribe_email,
    )
    from jobs.settings import get_settings

    if (args.token is None) == (args.email is None):
        print("jobs: error: give a TOKEN (or the link from the email) or --email", file=sys.stderr)
        return 2
    with session_factory(_url())() as session, session.begin():
        if args.email is not None:
            result = unsubscribe_email(session, args.email)
        else:
            settings = get_settings()
            result = unsubscribe(
                session,
                token_from(args.token),
                key=signing_key(settings),
                fallbacks=fallback_keys(settings),
            )
    when = result.since.isoformat(timespec="seconds")
    if result.already:
        print(f"user {result.user_id} ({result.email}) had already unsubscribed ({when})")
    else:
        print(f"user {result.user_id} ({result.email}) unsubscribed from promotions")
    return 0


def cmd_resubscribe(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.promotions.unsubscribe import resubscribe_email

    with session_factory(_url())() as session, session.begin():
        changed = resubscribe_email(session, args.email)
    if changed:
        print(f"{args.email} gets promotions again")
    else:
        print(f"{args.email} was not unsubscribed: nothing changed")
    return 0


def _promotion_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    campaigns = sub.add_parser(
        "campaigns", help="list, show, add, edit, enable, disable or delete campaigns"
    )
    actions = campaigns.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the campaigns (the default)")
    add = actions.add_parser("add", help="add a campaign")
    add.add_argument("name")
    add.add_argument("--subject", required=True, help="the email's subject")
    add.add_argument("--title", required=True, help="promotion_title in the template")
    add.add_argument("--content", required=True, help="promotion_content in the template")
    add.add_argument("--link", required=True, metavar="PATH", help="appended to FRONTEND_URL")
    add.add_argument("--enable", action="store_true", help="enable it now (default: disabled)")
    show = actions.add_parser("show", help="show one campaign")
    show.add_argument("name")
    edit = actions.add_parser("edit", help="change a campaign's subject, title, content or link")
    edit.add_argument("name")
    edit.add_argument("--subject")
    edit.add_argument("--title")
    edit.add_argument("--content")
    edit.add_argument("--link", metavar="PATH")
    actions.add_parser("delete", help="delete a campaign that never ran").add_argument("name")
    for action in ("enable", "disable"):
        actions.add_parser(action, help=f"{action} a campaign").add_argument("name")

    preview = sub.add_parser(
        "preview", help="render an email (subject, text, HTML, .eml) without sending it"
    )
    preview.add_argument("template", nargs="?", help="a template name, e.g. welcome")
    preview.add_argument("--context", metavar="JSON", help="the template's context")
    preview.add_argument(
        "--campaign", metavar="NAME", help="a campaign's promotion (TEMPLATE default: promotion)"
    )
    preview.add_argument("--out", metavar="DIR", help="write the files here instead of printing")
    preview.add_argument(
        "--to", default="recipient@example.com", metavar="ADDR", help=argparse.SUPPRESS
    )

    send_test = sub.add_parser(
        "send-test", help="send one email now through the configured server (no queue)"
    )
    send_test.add_argument("--to", required=True, metavar="ADDR")
    which = send_test.add_mutually_exclusive_group(required=True)
    which.add_argument("--template", metavar="NAME")
    which.add_argument("--campaign", metavar="NAME")
    send_test.add_argument("--context", metavar="JSON", help="the template's context")

    promote = sub.add_parser("promote", help="run the promotion now for the current period")
    promote.add_argument("--campaign", metavar="NAME", help="only this campaign")
    promote.add_argument(
        "--dry-run", action="store_true", help="count the recipients, write nothing"
    )
    paused = promote.add_mutually_exclusive_group()
    paused.add_argument(
        "--resume", type=_job_id, metavar="RUN_ID", help="continue a run the breaker paused"
    )
    paused.add_argument(
        "--cancel", type=_job_id, metavar="RUN_ID", help="end a run; its pending emails fail"
    )

    unsubscribe = sub.add_parser(
        "unsubscribe", help="unsubscribe a user: the token, the link from the email, or --email"
    )
    unsubscribe.add_argument("token", nargs="?", metavar="TOKEN_OR_URL")
    unsubscribe.add_argument("--email", metavar="ADDR", help="the user with this address")
    resubscribe = sub.add_parser("resubscribe", help="a user gets promotions again")
    resubscribe.add_argument("--email", required=True, metavar="ADDR")


# --- end Promotions -----------------------------------------------------------
# --- Deliverability: suppressions, inbound ------------------------------------


def cmd_suppressions(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.feedback import suppressions
    from jobs.models import SuppressionReason

    action = args.action or "list"
    with session_factory(_url())() as session, session.begin():
        if action == "add":
            reason = suppressions.parse_reason(args.reason)
            session.execute(
                suppressions.suppress(
                    args.address, reason, "manual: jobs suppressions add", override=True
                )
            )
            print(f"{suppressions.normalize(args.address)} suppressed ({reason.value})")
            if reason not in (SuppressionReason.HARD_BOUNCE, SuppressionReason.MANUAL):
                print("  (promotions only: transactional mail still goes to it)")
            return 0
        if action == "remove":
            if session.execute(suppressions.remove(args.address)).first() is None:
                print(f"{suppressions.normalize(args.address)} was not on the suppression list")
                return 1
            print(f"{suppressions.normalize(args.address)} removed from the suppression list")
            return 0
        rows = session.scalars(suppressions.listing(getattr(args, "limit", None))).all()
        for line in suppressions.describe(rows):
            print(line)
        print(
            f"{len(rows)} suppressed address(es)"
            + (" shown" if getattr(args, "limit", None) else "")
        )
    return 0


def cmd_inbound(args: argparse.Namespace) -> int:
    from jobs.db import async_session_factory, dispose_engines
    from jobs.errors import ConfigError
    from jobs.feedback import config
    from jobs.feedback.inbound import InboundHandler, serve
    from jobs.settings import get_settings

    settings = get_settings()
    url = _url()
    verp = config.verp(settings)
    if verp is None:
        raise ConfigError("MAIL_BOUNCE_DOMAIN is not set: `jobs inbound` takes mail for it")
    handler = InboundHandler(async_session_factory(url), verp, config.policy(settings))

    async def run() -> None:
        try:
            await serve(handler, settings.INBOUND_HOST, settings.INBOUND_PORT)
        finally:
            await dispose_engines()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise ConfigError(
            f"INBOUND_HOST/INBOUND_PORT: cannot listen on "
            f"{settings.INBOUND_HOST}:{settings.INBOUND_PORT}: {exc.strerror or exc}"
        ) from None
    return 0


def _deliverability_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from jobs.models import SuppressionReason

    parser = sub.add_parser("suppressions", help="list, add or remove suppressed addresses")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list the suppressed addresses (the default)")
    listing.add_argument("--limit", type=int, metavar="N", help="only the N latest")
    add = actions.add_parser("add", help="suppress an address")
    add.add_argument("address")
    add.add_argument(
        "--reason",
        default="manual",
        choices=[r.value for r in SuppressionReason],
        help="manual and hard_bounce stop all mail; complaint and unsubscribe, promotions",
    )
    actions.add_parser("remove", help="mail an address again").add_argument("address")
    sub.add_parser("inbound", help="receive bounces and complaints by SMTP for MAIL_BOUNCE_DOMAIN")


# --- end Deliverability -------------------------------------------------------
# Results ------------------------------------------------------------
RESULT_EXIT_CODES = {
    "succeeded": 0,
    "failed": 1,
    "cancelled": 1,
    "aborted": 1,
    "pending": 3,
    "unknown": 4,
}
RESULT_EPILOG = (
    "exit status: 0 succeeded, 1 failed/cancelled/aborted, 3 pending, 4 unknown job, "
    "2 configuration or database error"
)


def _job_id(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a job id is a positive integer, got {value!r}")
    return int(value)


def cmd_result(args: argparse.Namespace) -> int:
    import json

    from jobs.results.store import get_result

    _url()
    result = get_result(args.job_id)
    print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else result)
    return RESULT_EXIT_CODES[result.state.value]


def _add_result_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    result = sub.add_parser(
        "result", help="show a job's result, or its state", epilog=RESULT_EPILOG
    )
    result.add_argument("job_id", type=_job_id, metavar="JOB_ID", help="procrastinate job id")
    result.add_argument("--json", action="store_true", help="print the whole answer as JSON")


# Web: `jobs web`, and browsing jobs and emails from scripts ------------------

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def cmd_web(args: argparse.Namespace) -> int:
    import ipaddress

    import uvicorn

    from jobs.errors import ConfigError
    from jobs.settings import get_settings
    from jobs.web import create_app

    settings = get_settings()
    host = args.host or settings.WEB_HOST
    port = args.port or settings.WEB_PORT
    try:
        loopback = host in _LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    anonymous = settings.WEB_USERNAME is None
    if anonymous and not loopback:
        raise ConfigError(
            f"WEB_USERNAME and WEB_PASSWORD are not set: the dashboard would be open to "
            f"anyone reaching {host}; set both, or listen on 127.0.0.1"
        )
    _url()
    if anonymous:
        logger.warning("no WEB_USERNAME/WEB_PASSWORD: the dashboard is open on %s", host)
    app = create_app(settings, anonymous=anonymous)
    print(f"jobs web on http://{host}:{port}/ (dashboard: /dashboard/, unsubscribe: /unsubscribe)")
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
    return 0


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_list(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.ops import browse

    filters = browse.JobFilter(queue=args.queue, task=args.task, status=args.status, age=args.age)
    with session_factory(_url())() as session:
        rows = browse.list_jobs(session, filters, limit=args.limit, before_id=args.before)
    print(f"{'id':>9}  {'queue':<10} {'task':<32} {'status':<10} {'att':>3}  last event")
    for j in rows:
        last = f"{j.last_event or '-'} {_when(j.last_event_at)}"
        print(f"{j.id:>9}  {j.queue:<10} {j.task:<32} {j.status:<10} {j.attempts:>3}  {last}")
    if not rows:
        print("no job matches")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import json

    from jobs.db import session_factory
    from jobs.errors import JobStateError
    from jobs.ops import browse

    with session_factory(_url())() as session:
        job = browse.show_job(session, args.job_id)
    if job is None:
        raise JobStateError(f"there is no job {args.job_id} (never deferred, or pruned)")
    print(f"job {job.id}: {job.status}  queue {job.queue}  task {job.task}")
    print(
        f"  attempts {job.attempts}, priority {job.priority}, scheduled {_when(job.scheduled_at)}"
    )
    print(f"  args {json.dumps(job.args, ensure_ascii=False)}")
    if job.result is not None:
        print(f"  result {job.result}")
    print("  events:")
    for event in job.events:
        print(f"    {_when(event.at)}  {event.type}")
    for m in job.emails:
        error = f"  {m.failure_kind or ''} {m.last_error or ''}".rstrip()
        print(f"  email {m.id} to {m.to_address}: {m.status}{error}")
    return 0


def cmd_emails(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.ops import browse

    with session_factory(_url())() as session:
        rows = browse.search_emails(
            session,
            to=args.to,
            status=args.status,
            kind=args.kind,
            campaign=args.campaign,
            limit=args.limit,
        )
    print(f"{'id':>9}  {'job':>9}  {'status':<10} {'kind':<12} {'created':<19}  to / subject")
    for m in rows:
        job = "-" if m.job_id is None else str(m.job_id)
        print(
            f"{m.id:>9}  {job:>9}  {m.status:<10} {m.kind:<12} {_when(m.created_at)}  "
            f"{m.to_address}  {m.subject or ''}"
        )
    if not rows:
        print("no email matches")
    return 0


def _web_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web = sub.add_parser("web", help="serve the unsubscribe endpoint and the dashboard")
    web.add_argument("--host", help="address to listen on (default: WEB_HOST)")
    web.add_argument("--port", type=int, help="port (default: WEB_PORT)")
    list_ = sub.add_parser("list", help="list jobs, newest first")
    list_.add_argument("--queue", metavar="Q")
    list_.add_argument("--task", metavar="T", help="e.g. email.deliver")
    list_.add_argument("--status", metavar="S", help="todo, doing, succeeded, failed, ...")
    list_.add_argument(
        "--age", type=_duration, metavar="DURATION", help="deferred within, e.g. 2h, 1d"
    )
    list_.add_argument("--limit", type=int, default=50, metavar="N", help="default 50")
    list_.add_argument("--before", type=_job_id, metavar="JOB_ID", help="older than this job")
    show = sub.add_parser("show", help="one job: args, events, result, its emails")
    show.add_argument("job_id", type=_job_id, metavar="JOB_ID")
    emails = sub.add_parser("emails", help="emails by recipient, with the job of each")
    emails.add_argument("--to", metavar="ADDR", help="recipient address")
    emails.add_argument("--status", metavar="S", help="pending, sent, failed, suppressed")
    emails.add_argument("--kind", metavar="K", help="e.g. welcome, promotion")
    emails.add_argument("--campaign", metavar="NAME")
    emails.add_argument("--limit", type=int, default=50, metavar="N", help="default 50")


# ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobs", description="Background email and scheduled jobs on PostgreSQL."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="bring the database schema to the latest revision")

    worker = sub.add_parser("worker", help="run a worker")
    worker.add_argument(
        "--queues", nargs="+", metavar="QUEUE", help="queues to work (default: all)"
    )
    worker.add_argument(
        "--concurrency", type=int, metavar="N", help="jobs at once (default: WORKER_CONCURRENCY)"
    )
    worker.add_argument("--drain", action="store_true", help="process every due job, then exit 0")

    demo = sub.add_parser("demo", help="run the whole flow locally (embedded Postgres, SMTP sink)")
    demo.add_argument(
        "--database",
        default="jobs_demo",
        metavar="NAME",
        help="the demo's own database on the server (default: jobs_demo)",
    )
    _promotion_parsers(sub)
    _add_result_parser(sub)
    _deliverability_parsers(sub)
    _web_parsers(sub)

    # Operations
    status = sub.add_parser("status", help="queues, workers, task rates, email ledger, promotions")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    retry = sub.add_parser("retry-failed", help="re-queue failed jobs (and their retryable emails)")
    retry.add_argument("--queue", metavar="Q", help="only jobs of this queue")
    retry.add_argument("--task", metavar="T", help="only jobs of this task, e.g. email.deliver")
    retry.add_argument(
        "--since", type=_duration, metavar="DURATION", help="only jobs failed within, e.g. 2h, 1d"
    )
    retry.add_argument("--dry-run", action="store_true", help="show what would be re-queued")
    cancel = sub.add_parser("cancel", help="cancel a waiting job, or abort a running one")
    cancel.add_argument("job_id", type=int, metavar="JOB_ID")
    health = sub.add_parser("healthcheck", help="exit 0 if the local worker's /healthz says ok")
    health.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return parser


COMMANDS = {
    "migrate": cmd_migrate,
    "worker": cmd_worker,
    "demo": cmd_demo,
    "campaigns": cmd_campaigns,
    "promote": cmd_promote,
    "unsubscribe": cmd_unsubscribe,
    "resubscribe": cmd_resubscribe,
    "preview": cmd_preview,
    "send-test": cmd_send_test,
    "result": cmd_result,
    "status": cmd_status,
    "retry-failed": cmd_retry_failed,
    "cancel": cmd_cancel,
    "healthcheck": cmd_healthcheck,
    "suppressions": cmd_suppressions,
    "inbound": cmd_inbound,
    "web": cmd_web,
    "list": cmd_list,
    "show": cmd_show,
    "emails": cmd_emails,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    if getattr(args, "concurrency", None) is not None and args.concurrency < 1:
        print("jobs: error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except JobsError as exc:
        print(f"jobs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

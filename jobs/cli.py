"""The `jobs` command. Logging is configured here, and only here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from jobs.errors import JobsError

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
    from jobs.schema import migrate

    before, after = migrate(_url())
    if before == after:
        print(f"database already at the latest revision ({after})")
    else:
        print(f"database migrated from {before or 'empty'} to {after}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from jobs.settings import get_settings
    from jobs.worker import run_worker

    _url()
    concurrency = args.concurrency or get_settings().WORKER_CONCURRENCY
    asyncio.run(run_worker(queues=args.queues, concurrency=concurrency, drain=args.drain))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.demo import run_demo

    return run_demo()


# --- Promotions (issue 4) ---------------------------------------------------


def cmd_campaigns(args: argparse.Namespace) -> int:
    from jobs.campaigns import add_campaign, list_campaigns, set_active
    from jobs.db import session_factory

    with session_factory(_url())() as session, session.begin():
        if args.action == "add":
            add_campaign(
                session,
                name=args.name,
                subject=args.subject,
                title=args.title,
                content=args.content,
                link_path=args.link,
                active=not args.disabled,
            )
            print(f"campaign {args.name!r} added")
        elif args.action in ("enable", "disable"):
            set_active(session, args.name, args.action == "enable")
            print(f"campaign {args.name!r} {args.action}d")
        for c in list_campaigns(session):
            state = "active  " if c.active else "disabled"
            print(f"{c.name:<20} {state} {c.link_path:<20} {c.subject}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from jobs.schedule import latest_tick
    from jobs.settings import get_settings

    settings = get_settings()
    url = _url()
    period = latest_tick(settings.PROMOTION_CRON, datetime.now(UTC))
    print(
        f"period {period.isoformat()} (latest tick of PROMOTION_CRON {settings.PROMOTION_CRON!r})"
    )
    return asyncio.run(_promote(url, period, args.campaign, args.dry_run))


async def _promote(url: str, period: datetime, campaign: str | None, dry_run: bool) -> int:
    from jobs.db import async_session_factory, dispose_engines
    from jobs.progress import FanOutProgress
    from jobs.promotion import count_recipients, promotion_config, send_promotions
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


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    from jobs.db import session_factory
    from jobs.settings import get_settings
    from jobs.unsubscribe import signing_key, unsubscribe

    key = signing_key(get_settings())
    with session_factory(_url())() as session, session.begin():
        result = unsubscribe(session, args.token, key=key)
    when = result.since.isoformat(timespec="seconds")
    if result.already:
        print(f"user {result.user_id} ({result.email}) had already unsubscribed ({when})")
    else:
        print(f"user {result.user_id} ({result.email}) unsubscribed from promotions")
    return 0


def _promotion_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    campaigns = sub.add_parser("campaigns", help="list, add, enable or disable campaigns")
    actions = campaigns.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the campaigns (the default)")
    add = actions.add_parser("add", help="add a campaign")
    add.add_argument("name")
    add.add_argument("--subject", required=True, help="the email's subject")
    add.add_argument("--title", required=True, help="promotion_title in the template")
    add.add_argument("--content", required=True, help="promotion_content in the template")
    add.add_argument("--link", required=True, metavar="PATH", help="appended to FRONTEND_URL")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    for action in ("enable", "disable"):
        actions.add_parser(action, help=f"{action} a campaign").add_argument("name")

    promote = sub.add_parser("promote", help="run the promotion now for the current period")
    promote.add_argument("--campaign", metavar="NAME", help="only this campaign")
    promote.add_argument(
        "--dry-run", action="store_true", help="count the recipients, write nothing"
    )

    unsubscribe = sub.add_parser("unsubscribe", help="apply an unsubscribe token")
    unsubscribe.add_argument("token")


# --- end Promotions -----------------------------------------------------------
# Results (issue 6) ------------------------------------------------------------
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

    from jobs.results import get_result

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

    sub.add_parser("demo", help="run the whole flow locally (embedded Postgres, SMTP sink)")
    _promotion_parsers(sub)
    _add_result_parser(sub)
    return parser


COMMANDS = {
    "migrate": cmd_migrate,
    "worker": cmd_worker,
    "demo": cmd_demo,
    "campaigns": cmd_campaigns,
    "promote": cmd_promote,
    "unsubscribe": cmd_unsubscribe,
    "result": cmd_result,
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

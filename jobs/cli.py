"""The `jobs` command. Logging is configured here, and only here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

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
    _add_result_parser(sub)
    return parser


COMMANDS = {"migrate": cmd_migrate, "worker": cmd_worker, "demo": cmd_demo, "result": cmd_result}


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

"""Deployment files: the compose file parses, runs only real `jobs` subcommands, and keeps
the original design's shape (minus the broker); the image and the make verbs match."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from jobs import cli

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _subcommands() -> set[str]:
    parser = cli._parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def _entrypoint() -> list[str]:
    [line] = [
        ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.startswith("ENTRYPOINT")
    ]
    value = json.loads(line.removeprefix("ENTRYPOINT"))
    assert isinstance(value, list)
    return value


def test_every_command_compose_runs_is_a_real_jobs_subcommand() -> None:
    services = _compose()["services"]
    assert _entrypoint() == ["jobs"]
    ours = {name: s for name, s in services.items() if "build" in s}
    assert set(ours) == {"migrate", "worker", "web"}
    for name, service in ours.items():
        command = service["command"]
        assert command[0] in _subcommands(), f"{name}: {command}"
        cli._parser().parse_args(command)  # the arguments parse too
    check = services["worker"]["healthcheck"]["test"]
    assert check[0] == "CMD"
    assert check[1] == "jobs"
    assert check[2] in _subcommands()


def test_compose_has_the_services_of_the_original_design_without_the_broker() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "worker", "web", "mailpit", "redis"}
    postgres = services["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "container_name" not in worker
    assert "ports" not in worker
    environment = worker["environment"]
    assert environment["MAIL_SERVER"] == "mailpit"
    assert environment["DATABASE_URL"].startswith("postgresql://")
    assert services["redis"]["profiles"] == ["cache"]
    web = services["web"]  # the dashboard: published on loopback only, with credentials
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    assert {"WEB_USERNAME", "WEB_PASSWORD", "SECRET_KEY"} <= set(web["environment"])
    # No secret ships with a default: compose refuses to start without them in .env.
    for secret in ("WEB_PASSWORD", "SECRET_KEY"):
        assert web["environment"][secret].startswith(f"${{{secret}:?"), secret
    for name, service in services.items():
        assert name == "redis" or "profiles" not in service


def test_image_is_slim_non_root_and_without_dev_tools() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert all(
        re.match(r"python:3\.\d+-slim", ln.split()[1])
        for ln in dockerfile.splitlines()
        if ln.startswith("FROM")
    )
    [user] = [ln.split()[1] for ln in dockerfile.splitlines() if ln.startswith("USER")]
    assert user not in {"root", "0"}
    assert "--group dev" not in dockerfile
    assert "pytest" not in dockerfile
    assert "COPY migrations" in dockerfile  # the wheel force-includes them


def test_make_keeps_the_original_verbs() -> None:
    def dry_run(*args: str) -> str:
        result = subprocess.run(
            ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return result.stdout

    assert "docker compose up -d" in dry_run("up")
    assert "--scale worker=3 worker" in dry_run("up-worker", "WORKERS=3")
    assert "docker compose down" in dry_run("down")
    assert "docker compose restart" in dry_run("restart")
    assert "docker compose logs -f" in dry_run("logs")
    assert "jobs status" in dry_run("status")

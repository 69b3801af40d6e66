"""The web side in a real browser: Debian's chromium driven by Playwright (never a
downloaded browser) against `jobs web` and `jobs worker` processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.async_api import ConsoleMessage, async_playwright, expect

from jobs.dev.sink import free_port
from tests.conftest import ROOT
from tests.web import (
    PASSWORD,
    SECRET,
    USER,
    add_user,
    campaign,
    failed_job,
    job_status,
    unsubscribed,
)
from tests.workers import get, spawn, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# JOBS_SCREENSHOT=docs/dashboard.png refreshes the README's picture
SCREENSHOT = os.environ.get("JOBS_SCREENSHOT")


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        reason = "no chromium (apt-get install -y chromium)"
        if os.environ.get("JOBS_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def web_server(database_url: str, env: Callable[..., None], tmp_path: Path) -> Iterator[str]:
    """`jobs web` as a process on a free loopback port, with operator credentials."""
    env(SECRET_KEY=SECRET, WEB_USERNAME=USER, WEB_PASSWORD=PASSWORD)
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "web", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ},
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return get(f"{base}/static/style.css")[0] == 200
        except OSError:
            return False

    try:
        wait_until(answers, "jobs web to answer")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_an_operator_retries_a_failed_job_and_a_user_unsubscribes(
    database_url: str, web_server: str, chromium: str, tmp_path: Path
) -> None:
    job_id = failed_job(database_url, 3)
    campaign(database_url)
    user_id, token = add_user(database_url, "ada@example.com")
    worker = spawn("worker", "--queues", "default", log=tmp_path / "worker.log")
    try:
        wait_until(lambda: _worker_recorded(database_url, worker.pid), "the worker's row")
        await _browse(web_server, chromium, job_id, token, worker.pid, tmp_path)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert job_status(database_url, job_id) == "todo"
    assert not unsubscribed(database_url, user_id)  # unsubscribed, then resubscribed


def _worker_recorded(url: str, pid: int) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT 1 FROM worker_info WHERE pid = %s", (pid,)).fetchone() is not None
        )


async def _browse(
    base: str, chromium: str, job_id: int, token: str, worker_pid: int, tmp_path: Path
) -> None:
    problems: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if message.type == "error":  # e.g. anything the Content-Security-Policy refused
            problems.append(message.text)

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                http_credentials={"username": USER, "password": PASSWORD},
                viewport={"width": 1100, "height": 900},
            )
            page = await context.new_page()
            page.on("console", watch)

            # the overview: queues, the worker with its pid and queues, the warning
            await page.goto(f"{base}/dashboard/")
            await expect(page.get_by_role("heading", name="Queues")).to_be_visible()
            await expect(
                page.get_by_text("has due jobs and no live worker serves it")
            ).to_have_count(0)
            await expect(page.locator("svg.chart")).to_be_visible()
            await expect(page.get_by_role("cell", name=str(worker_pid), exact=True)).to_be_visible()
            shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=False)
            assert shot.read_bytes().startswith(b"\x89PNG")

            # filter the failed jobs, open one, retry it: it moves to todo
            await page.get_by_role("link", name="Jobs", exact=True).click()
            await page.get_by_label("status").select_option("failed")
            await page.get_by_role("button", name="Filter", exact=True).click()
            await page.get_by_role("link", name=str(job_id), exact=True).click()
            await expect(page.locator("#job-status")).to_have_text("failed")
            await page.get_by_role("button", name="Retry", exact=True).click()
            await expect(page.get_by_role("status")).to_contain_text(f"job {job_id} re-queued")
            await expect(page.locator("#job-status")).to_have_text("todo")
            # the failed filter no longer lists it; the email queue now has due work
            await page.goto(f"{base}/dashboard/jobs?status=failed")
            await expect(page.get_by_role("link", name=str(job_id), exact=True)).to_have_count(0)
            await page.goto(f"{base}/dashboard/")
            await expect(page.get_by_role("alert")).to_contain_text("email")

            # a campaign's preview
            await page.get_by_role("link", name="Campaigns", exact=True).click()
            await page.get_by_role("link", name="spring").first.click()
            await expect(page.locator("#preview-subject")).to_have_text("Spring sale")
            await expect(page.locator("#preview-text")).to_contain_text("Thirty percent off")

            # the public side: confirm, unsubscribe, resubscribe (no credentials needed)
            public = await browser.new_context()
            visitor = await public.new_page()
            visitor.on("console", watch)
            await visitor.goto(f"{base}/unsubscribe?token={token}")
            await expect(visitor.get_by_text("ada@example.com")).to_be_visible()
            await visitor.get_by_role("button", name="Unsubscribe").click()
            await expect(visitor.get_by_role("heading")).to_have_text("You are unsubscribed")
            await visitor.get_by_role("button", name="Resubscribe").click()
            await expect(visitor.get_by_role("heading")).to_have_text("Welcome back")
            await public.close()
            await context.close()
        finally:
            await browser.close()
    assert problems == []

"""`jobs.web` over HTTP (httpx on the ASGI app) against a real database: the public
unsubscribe endpoint, the dashboard's pages and actions, credentials, CSRF, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Generator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from jobs.db import session_factory
from jobs.models import EmailMessage, JobResult
from jobs.web import create_app
from tests.conftest import count, queue_chunk
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

BASE = "http://testserver"


class _NoCredentials(httpx.Auth):
    """Sends the request as it is: no Authorization header."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


ANONYMOUS = _NoCredentials()
ORIGIN = {"origin": BASE}


@pytest.fixture
async def client(database_url: str, env: Callable[..., None]) -> AsyncIterator[httpx.AsyncClient]:
    """The app with Basic credentials, and a client that sends them."""
    env(SECRET_KEY=SECRET, WEB_USERNAME=USER, WEB_PASSWORD=PASSWORD)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE, auth=(USER, PASSWORD)) as c:
        yield c


async def _csrf(client: httpx.AsyncClient, page: str = "/dashboard/") -> str:
    """Load a page (which sets the CSRF cookie) and return the token of its forms."""
    response = await client.get(page)
    assert response.status_code == 200
    token = client.cookies.get("jobs_csrf")
    assert token
    return token


# -- unsubscribe ---------------------------------------------------------------------


async def test_get_confirms_and_post_unsubscribes_once(
    database_url: str, client: httpx.AsyncClient
) -> None:
    user_id, token = add_user(database_url, "ada@example.com")
    page = await client.get("/unsubscribe", params={"token": token}, auth=ANONYMOUS)
    assert page.status_code == 200
    assert "Unsubscribe from promotions?" in page.text
    assert not unsubscribed(database_url, user_id)  # a prefetching scanner changes nothing

    # RFC 8058: the mail provider POSTs this body, with no cookie, CSRF token or Origin
    one_click = {"List-Unsubscribe": "One-Click"}
    done = await client.post(
        "/unsubscribe", params={"token": token}, data=one_click, auth=ANONYMOUS
    )
    assert done.status_code == 200
    assert "will receive no more promotions" in done.text
    assert unsubscribed(database_url, user_id)
    again = await client.post(
        "/unsubscribe", params={"token": token}, data=one_click, auth=ANONYMOUS
    )
    assert again.status_code == 200
    assert "was already unsubscribed" in again.text


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "garbage",
        "1.",
        "-1.abc",
        "<script>alert(1)</script>",
        "99999999999999999999999999.abc",
        "1." + "A" * 10_000,
        "1.\u00e9\u0000",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_bad_tokens_answer_400(
    client: httpx.AsyncClient, token: str | None, method: str
) -> None:
    params = {} if token is None else {"token": token}
    response = await client.request(method, "/unsubscribe", params=params, auth=ANONYMOUS)
    assert response.status_code == 400
    assert "not valid" in response.text
    assert "<script>alert" not in response.text


async def test_links_signed_with_a_former_key_still_work(
    database_url: str, env: Callable[..., None]
) -> None:
    env(SECRET_KEY=SECRET)
    user_id, old_token = add_user(database_url, "ada@example.com")
    env(SECRET_KEY="the-new-secret-key-0123456789", SECRET_KEY_FALLBACKS=SECRET)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        assert (await c.get("/unsubscribe", params={"token": old_token})).status_code == 200
        assert (await c.post("/unsubscribe", params={"token": old_token})).status_code == 200
    assert unsubscribed(database_url, user_id)


async def test_forged_or_moved_tokens_answer_400_and_change_nothing(
    database_url: str, client: httpx.AsyncClient
) -> None:
    ada, token = add_user(database_url, "ada@example.com")
    bob, _ = add_user(database_url, "bob@example.com", "bob")
    moved = f"{bob}.{token.partition('.')[2]}"  # Ada's signature on Bob's id
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (moved, tampered, f"{ada + 1000}.{token.partition('.')[2]}"):
        response = await client.post("/unsubscribe", params={"token": bad}, auth=ANONYMOUS)
        assert response.status_code == 400
    assert not unsubscribed(database_url, ada)
    assert not unsubscribed(database_url, bob)


async def test_resubscribe_needs_the_pages_proof_and_the_same_origin(
    database_url: str, client: httpx.AsyncClient
) -> None:
    user_id, token = add_user(database_url, "ada@example.com")
    done = await client.post("/unsubscribe", params={"token": token}, auth=ANONYMOUS)
    proof = re.search(r'name="proof" value="([^"]+)"', done.text)
    assert proof is not None
    action = re.search(r'action="([^"]*resubscribe[^"]*)"', done.text)
    assert action is not None
    url = action.group(1).replace("&amp;", "&")

    forged = await client.post(url, data={"proof": "x" * 43}, headers=ORIGIN, auth=ANONYMOUS)
    assert forged.status_code == 403
    cross = await client.post(
        url,
        data={"proof": proof.group(1)},
        headers={"origin": "https://evil.example"},
        auth=ANONYMOUS,
    )
    assert cross.status_code == 403
    assert unsubscribed(database_url, user_id)

    ok = await client.post(url, data={"proof": proof.group(1)}, headers=ORIGIN, auth=ANONYMOUS)
    assert ok.status_code == 200
    assert "Welcome back" in ok.text
    assert not unsubscribed(database_url, user_id)


# -- credentials and headers ----------------------------------------------------------

PAGES = [
    "/dashboard/",
    "/dashboard/jobs",
    "/dashboard/jobs?status=failed&queue=email&age=1h",
    "/dashboard/emails?to=user0@example.com",
    "/dashboard/campaigns",
    "/dashboard/campaigns/spring/preview",
    "/dashboard/campaigns/spring/preview.html",
]


@pytest.mark.parametrize("page", PAGES)
async def test_every_dashboard_page_needs_credentials(
    database_url: str, client: httpx.AsyncClient, page: str
) -> None:
    campaign(database_url)
    queue_chunk(database_url, 1)
    anonymous = await client.get(page, auth=ANONYMOUS)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    wrong = await client.get(page, auth=(USER, PASSWORD + "x"))
    assert wrong.status_code == 401
    ok = await client.get(page)
    assert ok.status_code == 200
    csp = ok.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert ok.headers["x-content-type-options"] == "nosniff"
    assert ok.headers["referrer-policy"] == "same-origin"
    if page.endswith(".html"):
        assert "sandbox" in csp  # the email's own HTML cannot run anything
    else:
        assert "script-src" not in csp
        assert "'unsafe-inline'" not in csp


async def test_the_dashboard_is_off_without_credentials(
    database_url: str, env: Callable[..., None]
) -> None:
    env(SECRET_KEY=SECRET)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        response = await c.get("/dashboard/")
        assert response.status_code == 403
        assert "WEB_USERNAME" in response.text
        _, token = add_user(database_url, "ada@example.com")
        assert (await c.get("/unsubscribe", params={"token": token})).status_code == 200


async def test_the_host_apps_auth_decides_when_mounted(
    database_url: str, env: Callable[..., None]
) -> None:
    env(SECRET_KEY=SECRET)

    async def is_operator(request: Request) -> bool:
        return request.headers.get("x-user") == "ops"

    host = Starlette()
    host.mount("/jobs", create_app(auth=is_operator))
    _, token = add_user(database_url, "ada@example.com")
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        assert (await c.get("/jobs/dashboard/")).status_code == 403
        page = await c.get("/jobs/dashboard/", headers={"x-user": "ops"})
        assert page.status_code == 200
        # every link and form is a path inside the mount (right behind a TLS proxy too)
        links = re.findall(r'(?:href|action)="([^"]+)"', page.text)
        assert links
        assert all(link.startswith("/jobs/") for link in links if link != "data:,"), links
        confirm = await c.get("/jobs/unsubscribe", params={"token": token})
        [action] = re.findall(r'action="([^"]+)"', confirm.text)
        assert action.startswith("/jobs/unsubscribe?token=")
        assert (await c.post(action.replace("&amp;", "&"))).status_code == 200


async def test_each_side_can_be_mounted_on_its_own(
    database_url: str, env: Callable[..., None]
) -> None:
    env(SECRET_KEY=SECRET, WEB_USERNAME=USER, WEB_PASSWORD=PASSWORD)
    public = Starlette()
    public.mount("/email", create_app(with_dashboard=False))
    internal = Starlette()
    internal.mount("/ops/jobs", create_app(with_unsubscribe=False))
    _, token = add_user(database_url, "ada@example.com")
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=public), base_url=BASE) as outside,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=internal), base_url=BASE, auth=(USER, PASSWORD)
        ) as inside,
    ):
        assert (await outside.get("/email/unsubscribe", params={"token": token})).status_code == 200
        assert (await outside.get("/email/dashboard/", auth=(USER, PASSWORD))).status_code == 404
        assert (await outside.get("/email/")).status_code == 404
        assert (await inside.get("/ops/jobs/dashboard/")).status_code == 200
        home = await inside.get("/ops/jobs/")
        assert home.headers["location"] == "/ops/jobs/dashboard/"
        params = {"token": token}
        assert (await inside.get("/ops/jobs/unsubscribe", params=params)).status_code == 404


# -- actions ---------------------------------------------------------------------------


async def test_actions_need_a_csrf_token_and_the_same_origin(
    database_url: str, client: httpx.AsyncClient
) -> None:
    job_id = failed_job(database_url)
    token = await _csrf(client)
    url = f"/dashboard/jobs/{job_id}/retry"
    attempts: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, ORIGIN),  # no token
        ({"csrf": "x" * 43}, ORIGIN),  # a wrong one
        ({"csrf": token}, {"origin": "https://evil.example"}),  # another site's form
        ({"csrf": token}, {}),  # no Origin, no Referer
    ]
    for data, headers in attempts:
        response = await client.post(url, data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
        assert job_status(database_url, job_id) == "failed"
    no_credentials = await client.post(url, data={"csrf": token}, headers=ORIGIN, auth=ANONYMOUS)
    assert no_credentials.status_code == 401

    referer = {"referer": f"{BASE}/dashboard/jobs/{job_id}"}
    done = await client.post(url, data={"csrf": token}, headers=referer)
    assert done.status_code == 303
    assert job_status(database_url, job_id) == "todo"


async def test_retry_and_cancel_one_job(database_url: str, client: httpx.AsyncClient) -> None:
    failed = failed_job(database_url, 2)
    token = await _csrf(client)
    form = {"csrf": token}
    page = await client.post(
        f"/dashboard/jobs/{failed}/retry", data=form, headers=ORIGIN, follow_redirects=True
    )
    assert page.status_code == 200
    assert f"job {failed} re-queued" in page.text
    assert job_status(database_url, failed) == "todo"
    # retrying it again is refused: it is not failed any more
    again = await client.post(
        f"/dashboard/jobs/{failed}/retry", data=form, headers=ORIGIN, follow_redirects=True
    )
    assert "only a failed job can be retried" in again.text

    cancelled = await client.post(
        f"/dashboard/jobs/{failed}/cancel", data=form, headers=ORIGIN, follow_redirects=True
    )
    assert f"job {failed}: cancelled" in cancelled.text
    assert job_status(database_url, failed) == "cancelled"
    assert count(database_url, "SELECT count(*) FROM email_messages WHERE status = 'failed'") == 2
    missing = await client.post("/dashboard/jobs/999999/cancel", data=form, headers=ORIGIN)
    assert missing.status_code == 303
    assert (await client.get("/dashboard/jobs/999999")).status_code == 404


async def test_retry_all_failed_follows_the_filter(
    database_url: str, client: httpx.AsyncClient
) -> None:
    failed = [failed_job(database_url, key=f"f{i}") for i in range(2)]
    token = await _csrf(client)
    other_task = await client.post(
        "/dashboard/jobs/retry-failed",
        data={"csrf": token, "task": "maintenance.prune"},
        headers=ORIGIN,
        follow_redirects=True,
    )
    assert "re-queued 0 failed job(s)" in other_task.text
    assert [job_status(database_url, j) for j in failed] == ["failed", "failed"]
    done = await client.post(
        "/dashboard/jobs/retry-failed",
        data={"csrf": token, "queue": "email", "age": "1h"},
        headers=ORIGIN,
        follow_redirects=True,
    )
    assert "re-queued 2 failed job(s)" in done.text
    assert [job_status(database_url, j) for j in failed] == ["todo", "todo"]
    bad = await client.post(
        "/dashboard/jobs/retry-failed", data={"csrf": token, "age": "soon"}, headers=ORIGIN
    )
    assert bad.status_code == 400


async def test_enable_and_disable_a_campaign(database_url: str, client: httpx.AsyncClient) -> None:
    campaign(database_url)
    token = await _csrf(client, "/dashboard/campaigns")
    active = "SELECT count(*) FROM campaigns WHERE active AND name = 'spring'"
    page = await client.post(
        "/dashboard/campaigns/spring/disable",
        data={"csrf": token},
        headers=ORIGIN,
        follow_redirects=True,
    )
    assert "campaign &#39;spring&#39; disabled" in page.text
    assert count(database_url, active) == 0
    await client.post("/dashboard/campaigns/spring/enable", data={"csrf": token}, headers=ORIGIN)
    assert count(database_url, active) == 1
    unknown = await client.post(
        "/dashboard/campaigns/nope/enable", data={"csrf": token}, headers=ORIGIN
    )
    assert unknown.status_code == 303
    assert "no+campaign+named" in unknown.headers["location"]
    assert (await client.get("/dashboard/campaigns/nope/preview")).status_code == 404


# -- pages -------------------------------------------------------------------------------


async def test_jobs_list_filters_and_pages_by_keyset(
    database_url: str, client: httpx.AsyncClient
) -> None:
    failed = failed_job(database_url, key="failed")
    todo = [queue_chunk(database_url, 1, key=f"k{i}")[1] for i in range(51)]

    def ids(text: str) -> list[int]:
        return [int(i) for i in re.findall(r'/dashboard/jobs/(\d+)"', text)]

    first = await client.get("/dashboard/jobs", params={"status": "todo"})
    assert ids(first.text) == sorted(todo, reverse=True)[:50]
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older is not None
    second = await client.get(older.group(1).replace("&amp;", "&"))
    assert ids(second.text) == [min(todo)]
    assert 'rel="next"' not in second.text

    only_failed = await client.get("/dashboard/jobs", params={"status": "failed"})
    assert ids(only_failed.text) == [failed]
    assert ids((await client.get("/dashboard/jobs", params={"queue": "default"})).text) == []
    for bad in ({"status": "nonsense"}, {"age": "a while"}, {"before": "-3"}):
        assert (await client.get("/dashboard/jobs", params=bad)).status_code == 400


async def test_job_page_shows_args_events_result_and_its_emails(
    database_url: str, client: httpx.AsyncClient
) -> None:
    job_id = failed_job(database_url, 2)
    page = await client.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200
    assert "message_ids" in page.text
    assert "user0@example.com" in page.text
    assert "user1@example.com" in page.text
    timeline = page.text[page.text.index('class="timeline"') :]
    assert timeline.index(">deferred<") < timeline.index(">failed<")
    assert ">Retry</button>" in page.text


async def test_emails_are_found_with_their_job(
    database_url: str, client: httpx.AsyncClient
) -> None:
    _, job_id = queue_chunk(database_url, 2)
    page = await client.get("/dashboard/emails", params={"to": "USER1@example.com"})
    assert "user1@example.com" in page.text
    assert "user0@example.com" not in page.text
    assert f'/dashboard/jobs/{job_id}"' in page.text
    assert (await client.get("/dashboard/emails", params={"status": "lost"})).status_code == 400


async def test_hostile_strings_stay_text(database_url: str, client: httpx.AsyncClient) -> None:
    hostile = "<script>alert(1)</script>"
    _, token = add_user(database_url, f"{hostile}@example.com", username=hostile)
    campaign(database_url, name="evil", subject=f"Sale {hostile}")
    ids, job_id = queue_chunk(database_url, 1)
    with session_factory(database_url)() as session, session.begin():
        message = session.get(EmailMessage, ids[0])
        assert message is not None
        message.subject = hostile
        message.kind = hostile
        message.to_address = f"{hostile}@example.com"
        session.add(JobResult(job_id=job_id, task_name=hostile, status="failed", error=hostile))
    pages = [
        "/dashboard/campaigns",
        "/dashboard/campaigns/evil/preview",
        "/dashboard/emails",
        f"/dashboard/emails?kind={hostile}",
        f"/dashboard/jobs/{job_id}",
        f"/dashboard/jobs?task={hostile}",
        f"/dashboard/jobs?status={hostile}",
        f"/unsubscribe?token={hostile}",
        f"/unsubscribe?token={token}",
    ]
    for page in pages:
        response = await client.get(page)
        assert response.status_code in (200, 400), page
        assert "<script" not in response.text, page
    shown = [
        ("/dashboard/campaigns/evil/preview", "Sale &lt;script&gt;alert(1)&lt;/script&gt;"),
        (f"/dashboard/jobs/{job_id}", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        (f"/unsubscribe?token={token}", "&lt;script&gt;alert(1)&lt;/script&gt;@example.com"),
    ]
    for page, escaped in shown:
        assert escaped in (await client.get(page)).text, page


async def test_overview_warns_of_a_queue_no_worker_serves(
    database_url: str, client: httpx.AsyncClient
) -> None:
    queue_chunk(database_url, 1)
    page = await client.get("/dashboard/")
    assert "No worker is running" in page.text
    assert "Queue <strong>email</strong> has due jobs and no live worker serves it" in page.text
    assert "<svg" in page.text

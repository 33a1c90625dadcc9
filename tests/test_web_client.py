"""The web client (web/client/, served at `/`) in a real browser: Debian's headless Chromium,
driven by Playwright (no browser download: `executable_path=/usr/bin/chromium`), against a real
uvicorn process of the app with the offline deterministic writer.

Sign up → generate a course → the progress bar reaches 100 % → open the course and see its
topics; an expired access token is renewed through the refresh token on the next load.
Screenshots go to the test's directory, and to docs/screenshots/ with
COURSEGEN_UPDATE_SCREENSHOTS=1. Without Chromium or Playwright the test fails under CI (the
Debian packages are in .ci/apt-packages, Playwright in the dev extra) and is skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.slow_proxy import SlowProxy
from tests.support import gql, sign_up, spawn_worker
from tests.test_live_support import ROOT, free_port, spawn_web, stop, wait_ready

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
MARKDOWN_TAGS = {
    *("p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre"),
    *("blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"),
}
LATENCY_MS = 120  # per offline-writer call: the progress view is seen moving


def _browser_or_skip() -> Any:
    missing = None
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing = "Playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM.exists():
        missing = "Chromium is not installed (Debian packages chromium, chromium-driver)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/apt-packages and pyproject.toml list it")
        pytest.skip(missing)
    return async_playwright


@pytest.fixture
async def web(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    latency = getattr(request, "param", LATENCY_MS)  # a test may ask for a slower writer
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    # A Redis namespace of its own: no other test's job consumer on the shared Redis takes
    # this server's jobs (at another writer speed).
    namespace = {"REDIS_NAMESPACE": f"web-{uuid.uuid4().hex[:8]}"}
    extra = {"COURSEGEN_OFFLINE_LATENCY_MS": str(latency), **namespace}
    processes.append(
        spawn_web(
            settings,
            port,
            redis_url=settings.redis_url,
            extra=extra,
            data_dir=tmp_path,
            log_file=tmp_path / "web.log",  # a pipe nobody reads would fill and stall the server
        )
    )
    if settings.redis_url:  # jobs go through the Redis queue to a worker process
        processes.append(
            spawn_worker(settings, settings.redis_url, latency_ms=latency, extra=namespace)
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, processes[0])
        yield base
    finally:
        stop(*processes)


def _save(shot: bytes, name: str, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(shot)
    if os.environ.get("COURSEGEN_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / name).write_bytes(shot)


async def test_the_page_serves_hashed_immutable_assets_under_a_strict_csp(web: str) -> None:
    async with httpx.AsyncClient(base_url=web, timeout=10) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert len(assets) == 2 and "<script>" not in page.text
        for url in assets:
            assert re.fullmatch(r"/assets/[\w-]+\.[0-9a-f]{16}\.(js|css)", url)
            asset = await client.get(url)
            assert asset.status_code == 200
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        app_js = (await client.get(assets[-1] if assets[-1].endswith(".js") else assets[0])).text
        # Imports point at hashed modules too, so a change anywhere changes the importer's URL.
        assert re.search(r'from "/assets/api\.[0-9a-f]{16}\.js"', app_js)
        assert (await client.get("/assets/app.0000000000000000.js")).status_code == 404
        assert (await client.get("/health/live")).status_code == 200


async def test_sign_up_generate_watch_progress_and_open_the_course(
    web: str, tmp_path: Path
) -> None:
    async_playwright = _browser_or_skip()
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 800})
            page = await context.new_page()
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            await page.goto(web + "/")

            email = f"web-{uuid.uuid4().hex[:8]}@example.com"
            await page.fill("#signup input[name=email]", email)
            await page.fill("#signup input[name=password]", "correct horse battery staple")
            await page.fill("#signup input[name=displayName]", "Ada")
            await page.click("#signup button")
            await page.wait_for_selector("text=No courses yet")
            assert await page.text_content("#who") == "Ada"

            await page.fill("#generate input[name=topic]", "Tide pools of the North Sea")
            await page.select_option("#generate select[name=level]", "INTERMEDIATE")
            await page.click("#generate button")
            await page.wait_for_url(re.compile(r"#/jobs/"))
            bar = page.locator("[role=progressbar]")
            await page.wait_for_function(
                "() => +document.querySelector('[role=progressbar]')"
                ".getAttribute('aria-valuenow') >= 30"
            )
            _save(await page.screenshot(full_page=True), "progress.png", tmp_path)
            await page.wait_for_selector("#open-course")
            assert await bar.get_attribute("aria-valuenow") == "100"
            assert await page.text_content("#announce") == "Course generated."
            assert await page.locator("#events li").count() >= 10  # queued … completed

            await page.click("#open-course")
            await page.wait_for_selector("#course-title")
            assert await page.locator("section.subject").count() == 3
            assert await page.locator("article.topic").count() == 9
            content = page.locator("article.topic .content").first
            assert (await content.text_content() or "").strip()
            # Model output is Markdown rendered through the sanitizer: formatting, nothing else.
            tags = await content.evaluate(
                "node => [...node.querySelectorAll('*')].map(e => e.tagName.toLowerCase())"
            )
            assert tags and set(tags) <= MARKDOWN_TAGS, tags

            # An expired access token is renewed (rotating the refresh token) before the request.
            before = await page.evaluate("localStorage.getItem('coursegen.session')")
            await page.evaluate(
                """() => {
                  const s = JSON.parse(localStorage.getItem('coursegen.session'));
                  s.expiresAt = 0;
                  localStorage.setItem('coursegen.session', JSON.stringify(s));
                }"""
            )
            await page.goto(web + "/#/")
            await page.reload()  # the page reads the expired session from localStorage
            await page.wait_for_selector("#courses li a")
            assert await page.locator("#courses li").count() == 1
            after = await page.evaluate("localStorage.getItem('coursegen.session')")
            assert _refresh_token(after) != _refresh_token(before)
            _save(await page.screenshot(full_page=True), "dashboard.png", tmp_path)
        finally:
            await browser.close()
    assert problems == []


def _refresh_token(raw: str) -> str:
    token: str = json.loads(raw)["refreshToken"]
    return token


# --- offline, pokes, rejections, a dropped stream ------------------------------------------

GENERATE = """mutation($input: GenerateCourseInput!) {
  generateCourse(input: $input) { __typename ... on GenerateCourseSuccess { job { id } course { id } } }
}"""
JOB = "query($id: ID!) { generationJob(id: $id) { status } }"
COURSE_STATE = """query($id: ID!) { course(id: $id) { subjects { topics {
  id progress { completed } bookmarked notes { id body version } } } } }"""
NETWORK_NOISE = ("net::ERR_", "Failed to load resource", "WebSocket connection")


def _watch(page: Any, problems: list[str]) -> None:
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))

    def console(message: Any) -> None:
        # A browser offline (or a connection cut on purpose) logs its failed requests.
        if message.type == "error" and not any(n in message.text for n in NETWORK_NOISE):
            problems.append(f"console: {message.text}")

    page.on("console", console)


async def _signed_in(page: Any, base: str, user: Any) -> None:
    """The page with `user`'s session in localStorage, as after logging in."""
    await page.goto(base + "/")
    session = {
        "accessToken": user.token,
        "refreshToken": user.refresh_token,
        "expiresAt": int(time.time() * 1000) + 600_000,
        "user": {"id": str(user.id), "email": user.email, "displayName": "Ada"},
    }
    await page.evaluate("s => localStorage.setItem('coursegen.session', s)", json.dumps(session))


async def _generated_course(client: httpx.AsyncClient, token: str) -> str:
    body = await gql(
        client,
        GENERATE,
        {"input": {"topic": "Knots for sailors", "subjectCount": 2, "topicsPerSubject": 3}},
        token,
    )
    result = body["data"]["generateCourse"]
    for _ in range(600):
        job = await gql(client, JOB, {"id": result["job"]["id"]}, token)
        if job["data"]["generationJob"]["status"] in {"SUCCEEDED", "FAILED", "CANCELLED"}:
            break
        await asyncio.sleep(0.1)
    assert job["data"]["generationJob"]["status"] == "SUCCEEDED", job
    course_id: str = result["course"]["id"]
    return course_id


async def _server_topics(
    client: httpx.AsyncClient, token: str, course_id: str
) -> list[dict[str, Any]]:
    body = await gql(client, COURSE_STATE, {"id": course_id}, token)
    return [t for s in body["data"]["course"]["subjects"] for t in s["topics"]]


async def test_offline_changes_survive_a_reload_and_sync_when_the_network_returns(
    web: str, tmp_path: Path
) -> None:
    async_playwright = _browser_or_skip()
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=web, timeout=20) as client, async_playwright() as pw:
        user = await sign_up(client)
        course_id = await _generated_course(client, user.token)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1100, "height": 900})
            page = await context.new_page()
            _watch(page, problems)
            await _signed_in(page, web, user)
            # The service worker has installed the shell before the page that will go offline
            # loads, so that page is controlled from its first request.
            await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
            await page.goto(f"{web}/#/courses/{course_id}")
            await page.reload()
            await page.wait_for_selector("article.topic")
            assert await page.locator("article.topic").count() == 6
            assert await page.evaluate("navigator.serviceWorker.controller !== null")
            await page.wait_for_selector("#sync-status:has-text('All changes synced')")
            topics = page.locator("article.topic")

            await context.set_offline(True)
            for i in range(3):
                await topics.nth(i).locator("input.done").check()
            note = topics.nth(3).locator("textarea.note-body")
            await note.fill("Bowline: the rabbit comes out of the hole")
            await topics.nth(3).locator("button.save-note").click()
            await note.fill("Bowline: rabbit out of the hole, round the tree, back down")
            await topics.nth(3).locator("button.save-note").click()
            await topics.nth(4).locator("button.bookmark").click()
            status = page.locator("#sync-status")
            await page.wait_for_selector("#sync-status:has-text('6 changes waiting')")
            assert "Offline" in (await status.text_content() or "")
            _save(await page.screenshot(), "offline.png", tmp_path)
            # Nothing reached the server.
            before = await _server_topics(client, user.token, course_id)
            assert not any(t["progress"] for t in before) and not any(t["notes"] for t in before)

            await page.reload()  # offline: the shell from the service worker, data from IndexedDB
            await page.wait_for_selector("article.topic")
            assert [await topics.nth(i).locator("input.done").is_checked() for i in range(4)] == [
                True,
                True,
                True,
                False,
            ]
            assert (await note.input_value()).startswith("Bowline: rabbit out")
            assert (
                await topics.nth(4).locator("button.bookmark").get_attribute("aria-pressed")
                == "true"
            )
            await page.wait_for_selector("#sync-status:has-text('6 changes waiting')")

            await context.set_offline(False)
            await page.wait_for_selector("#sync-status:has-text('All changes synced')")
            after = await _server_topics(client, user.token, course_id)
            assert [bool(t["progress"] and t["progress"]["completed"]) for t in after] == [
                True,
                True,
                True,
                False,
                False,
                False,
            ]
            assert [t["bookmarked"] for t in after] == [False] * 4 + [True, False]
            # Two edits queued on one device: one note at version 2, no conflict copy.
            notes = after[3]["notes"]
            assert len(notes) == 1 and notes[0]["version"] == 2, notes
            assert notes[0]["body"] == "Bowline: rabbit out of the hole, round the tree, back down"
            assert not any(t["notes"] for i, t in enumerate(after) if i != 3)
        finally:
            await browser.close()
    assert problems == []


async def test_a_rejected_change_is_rolled_back_and_a_poke_refreshes_the_page(
    web: str, tmp_path: Path
) -> None:
    async_playwright = _browser_or_skip()
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=web, timeout=20) as client, async_playwright() as pw:
        user = await sign_up(client)
        course_id = await _generated_course(client, user.token)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            _watch(page, problems)
            await _signed_in(page, web, user)
            await page.goto(f"{web}/#/courses/{course_id}")
            await page.reload()
            topics = page.locator("article.topic")
            await page.wait_for_selector("#sync-status:has-text('All changes synced')")
            note = topics.nth(0).locator("textarea.note-body")
            await note.fill("first thoughts")
            await topics.nth(0).locator("button.save-note").click()
            for _ in range(200):  # until the push has landed
                notes = (await _server_topics(client, user.token, course_id))[0]["notes"]
                if notes:
                    break
                await asyncio.sleep(0.1)
            [saved] = notes

            # Another device completes a topic: the server pokes this page, which pulls.
            topic_id = await topics.nth(2).get_attribute("data-topic-id")
            done = await gql(
                client,
                "mutation($t: ID!) { completeTopic(input: {topicId: $t}) { __typename } }",
                {"t": topic_id},
                user.token,
            )
            assert done["data"]["completeTopic"]["__typename"] == "CompleteTopicSuccess", done
            await page.wait_for_function(
                "id => document.querySelector(`[data-topic-id='${id}'] input.done`).checked",
                arg=topic_id,
            )

            # Offline, the note is edited here while another device deletes it.
            await context.set_offline(True)
            await note.fill("second thoughts")
            await topics.nth(0).locator("button.save-note").click()
            gone = await gql(
                client,
                "mutation($id: ID!) { deleteNote(id: $id) { __typename } }",
                {"id": saved["id"]},
                user.token,
            )
            assert gone["data"]["deleteNote"]["__typename"] == "DeleteNoteSuccess", gone
            await context.set_offline(False)
            await page.wait_for_selector("#rejections:has-text('The note was deleted')")
            assert "A note edit was undone" in (await page.text_content("#rejections") or "")
            await page.wait_for_selector("#sync-status:has-text('All changes synced')")
            assert await note.input_value() == ""  # rolled back to the server's state
            assert (await _server_topics(client, user.token, course_id))[0]["notes"] == []
        finally:
            await browser.close()
    assert problems == []


# A slow writer (3 s a call; topics are written in parallel, so about 10 s in all): the cut,
# right after the first event, lands mid-generation.
@pytest.mark.parametrize("web", [3000], indirect=True)
async def test_a_dropped_connection_mid_generation_resumes_with_no_event_missed(
    web: str, tmp_path: Path
) -> None:
    async_playwright = _browser_or_skip()
    problems: list[str] = []
    port = int(web.rsplit(":", 1)[1])
    proxy = SlowProxy("127.0.0.1", port)
    await proxy.start()
    base = f"http://127.0.0.1:{proxy.port}"
    try:
        async with httpx.AsyncClient(base_url=web, timeout=20) as client, async_playwright() as pw:
            user = await sign_up(client)
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            try:
                page = await browser.new_page()
                _watch(page, problems)
                await _signed_in(page, base, user)
                await page.reload()
                # A topic of its own: no cached model answer makes the run instant.
                await page.fill(
                    "#generate input[name=topic]", f"Lighthouses {uuid.uuid4().hex[:8]}"
                )
                await page.click("#generate button[type=submit]")
                await page.wait_for_url(re.compile(r"#/jobs/"))
                await page.wait_for_selector("#events li")
                assert await page.locator("#open-course").count() == 0  # still generating
                await proxy.drop()  # every connection cut, mid-generation
                await page.wait_for_selector("#open-course", timeout=60_000)
                seqs = await page.eval_on_selector_all(
                    "#events li", "els => els.map(e => +e.dataset.seq)"
                )
                assert seqs == list(range(1, len(seqs) + 1)), seqs
                assert await page.text_content("#events li:last-child") is not None
                # The stream was cut and opened again (EventSource's own reconnect).
                assert int(await page.get_attribute("#events", "data-connections") or 0) >= 2
            finally:
                await browser.close()
    finally:
        await proxy.close()
    assert problems == []


XSS = [
    "<script>window.__xss = 1</script>",
    '<img src="x" onerror="window.__xss = 1">',
    "[click](javascript:window.__xss=1)",
    '<a href="javascript:window.__xss=1">x</a>',
    '<iframe src="data:text/html,<script>parent.__xss=1</script>"></iframe>',
    '<svg><animate onbegin="window.__xss=1" attributeName="x" dur="1s"></animate></svg>',
    '<p style="background:url(javascript:window.__xss=1)" onclick="window.__xss=1">p</p>',
    "```html\n<script>window.__xss = 1</script>\n```",
]


async def test_model_markdown_is_rendered_without_anything_executable(web: str) -> None:
    async_playwright = _browser_or_skip()
    async with httpx.AsyncClient(base_url=web, timeout=10) as client:
        worker = (await client.get("/sw.js")).text
    [module] = re.findall(r'"(/assets/markdown\.[0-9a-f]{16}\.js)"', worker)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page()
            await page.goto(web + "/")
            rendered = await page.evaluate(
                """async ([url, inputs]) => {
                  const { renderMarkdown } = await import(url);
                  const box = document.createElement('div');
                  for (const text of inputs) box.append(renderMarkdown(text));
                  box.append(renderMarkdown('# Title\\n\\n**bold** and `code` [ok](https://example.com)'));
                  document.body.append(box);
                  await new Promise((r) => setTimeout(r, 300));
                  box.querySelectorAll(':not(a)').forEach((e) => e.click && e.click());
                  return {
                    html: box.innerHTML,
                    tags: [...box.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
                    attrs: [...box.querySelectorAll('*')].flatMap((e) => e.getAttributeNames()),
                    xss: window.__xss ?? null,
                  };
                }""",
                [module, XSS],
            )
        finally:
            await browser.close()
    assert rendered["xss"] is None, rendered["html"]
    assert set(rendered["tags"]) <= MARKDOWN_TAGS, rendered["tags"]
    assert set(rendered["attrs"]) <= {"href", "title", "rel", "target"}, rendered["attrs"]
    assert "javascript:" not in rendered["html"].lower()
    assert "<h1>Title</h1>" in rendered["html"] and "<strong>bold</strong>" in rendered["html"]
    assert (
        '<a href="https://example.com" rel="noopener noreferrer nofollow" target="_blank">'
        in rendered["html"]
    )

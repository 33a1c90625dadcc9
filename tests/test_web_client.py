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

import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.support import spawn_worker
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
async def web(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    extra = {"COURSEGEN_OFFLINE_LATENCY_MS": str(LATENCY_MS)}
    processes.append(
        spawn_web(settings, port, redis_url=settings.redis_url, extra=extra, data_dir=tmp_path)
    )
    if settings.redis_url:  # jobs go through the Redis queue to a worker process
        processes.append(spawn_worker(settings, settings.redis_url, latency_ms=LATENCY_MS))
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

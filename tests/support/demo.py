"""The /demo page in headless Chromium: its server, its browser and opening it as someone.

Shared by the browser tests of the page (tests/integration/test_demo_*.py). Needs Debian's
``chromium`` at /usr/bin/chromium (scripts/test installs it when missing) and the
``playwright`` package (dev extra). Without Chromium a test fails, saying so: it is never
skipped. Each test module gets its own SQLite server: the page is what is under test there.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, Request, async_playwright, expect

from tests.support.backends import sqlite_url
from tests.support.live import LIVE_ENV, STARTUP_SECONDS
from tests.support.server import ServerProcess
from tests.support.tokens import auth, token

LIVE_ROUTES = re.compile(r"/health-information/(events|ws)")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("demo")
    process = ServerProcess(
        database_url=sqlite_url(data_dir),
        data_dir=data_dir,
        extra_env={**LIVE_ENV, "HEALTHINFO_ROOM_LIMIT": "50"},
    )
    process.start(timeout=STARTUP_SECONDS)
    try:
        yield process
    finally:
        process.stop()


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install it (apt-get install -y chromium); "
            "scripts/test does this before running the suite."
        )


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def open_demo(
    browser: Browser, server: ServerProcess, kit_id: str, user: str, timezone: str | None = None
) -> Page:
    """The page as ``user`` in a browser context of its own, once its stream is live.

    ``timezone``: the browser's (an IANA name), for what a page enters as a local time.
    """
    page = await open_page(browser, server, kit_id, token(user), timezone=timezone)
    await expect(page.locator("#status")).to_have_text("live")
    return page


async def open_page(
    browser: Browser,
    server: ServerProcess,
    kit_id: str,
    bearer: str,
    seen: list[str] | None = None,
    *,
    timezone: str | None = None,
) -> Page:
    """The demo page for ``kit_id`` with ``bearer``; ``seen`` collects its live-route requests."""
    context = await browser.new_context(timezone_id=timezone)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    if seen is not None:

        def note(request: Request) -> None:
            if LIVE_ROUTES.search(request.url):
                seen.append(request.url)

        page.on("request", note)
    await page.goto(f"{server.base_url}/demo#kit={kit_id}&token={bearer}")
    assert errors == []
    return page


async def claimed_kit(
    server: ServerProcess, owner: str, *editors: str, claim: dict[str, object] | None = None
) -> str:
    """A new kit claimed by ``owner`` (with ``claim`` as the claim's body), ``editors`` added."""
    kit_id = f"KIT-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        claimed = await http.post(f"/v1/kits/{kit_id}/claim", json=claim, headers=auth(owner))
        assert claimed.status_code == 201, claimed.text
        for editor in editors:
            member = await http.put(
                f"/v1/kits/{kit_id}/members/{editor}", json={"role": "editor"}, headers=auth(owner)
            )
            assert member.status_code == 201
    return kit_id

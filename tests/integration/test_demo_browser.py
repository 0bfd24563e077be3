"""The /demo page in headless Chromium: two people edit one kit together.

Needs Debian's ``chromium`` at /usr/bin/chromium (scripts/test installs it when missing) and the
``playwright`` package (dev extra). Without Chromium this test fails, saying so: it is never
skipped. Runs once, on its own SQLite server: the page is what is under test here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.backends import sqlite_url
from tests.support.live import LIVE_ENV, STARTUP_SECONDS
from tests.support.server import ServerProcess
from tests.support.tokens import auth, token

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

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


async def open_demo(browser: Browser, server: ServerProcess, kit_id: str, user: str) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{server.base_url}/demo#kit={kit_id}&token={token(user)}")
    await expect(page.locator("#status")).to_have_text("live")
    assert errors == []
    return page


async def test_an_edit_in_one_browser_appears_in_the_other(
    browser: Browser, demo_server: ServerProcess
) -> None:
    owner, editor = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    kit_id = f"KIT-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=demo_server.base_url, timeout=10) as http:
        page = await http.get("/demo")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert (await http.post(f"/v1/kits/{kit_id}/claim", headers=auth(owner))).status_code == 201
        member = await http.put(
            f"/v1/kits/{kit_id}/members/{editor}", json={"role": "editor"}, headers=auth(owner)
        )
        assert member.status_code in (200, 201)

    alice = await open_demo(browser, demo_server, kit_id, owner)
    bob = await open_demo(browser, demo_server, kit_id, editor)

    # Presence: each sees the other.
    await expect(alice.locator("#presence")).to_contain_text(editor)
    await expect(bob.locator("#presence")).to_contain_text(owner)

    # Alice types a height; it reaches Bob's page over EventSource.
    await alice.fill("#q-heightCm", "180")
    await alice.press("#q-heightCm", "Tab")
    await expect(bob.locator("#q-heightCm")).to_have_value("180")
    await expect(bob.locator("#version")).to_have_text("1")

    # Bob answers a choice question; Alice sees it, and sees where Bob is.
    await bob.select_option("#q-smokingStatus", "never")
    await expect(alice.locator("#q-smokingStatus")).to_have_value("never")
    await expect(alice.locator("#version")).to_have_text("2")
    await bob.focus("#q-weightKg")
    await expect(alice.locator("#who-weightKg")).to_contain_text(editor)

    # A stale edit (Alice's view pinned at version 1) of a question Bob changed since: conflict.
    await bob.fill("#q-heightCm", "182")
    await bob.press("#q-heightCm", "Tab")
    await expect(alice.locator("#q-heightCm")).to_have_value("182")
    await alice.evaluate("state.version = 1")
    await alice.fill("#q-heightCm", "175")
    await alice.press("#q-heightCm", "Tab")
    await expect(alice.locator("#conflict")).to_contain_text("heightCm")
    await expect(alice.locator("#q-heightCm")).to_have_value("182")
    await expect(bob.locator("#q-heightCm")).to_have_value("182")

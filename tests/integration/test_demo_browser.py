"""The /demo page in headless Chromium: two people edit one kit together.

The server, the browser and the helpers are in tests/support/demo.py (Chromium is required,
never skipped); the questionnaire features of the page are in test_demo_questionnaires.py.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect

from healthinfo.auth.tokens import mint_token
from tests.support.demo import browser, claimed_kit, demo_server, open_demo, open_page
from tests.support.server import ServerProcess
from tests.support.tokens import TEST_SECRET, auth, token

__all__ = ["browser", "demo_server"]  # fixtures, used by name

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

HEIGHT = "\u201cWhat is your height in centimetres?\u201d"


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
    await expect(alice.locator("#conflict")).to_contain_text("What is your height in centimetres?")
    await expect(alice.locator("#q-heightCm")).to_have_value("182")
    await expect(bob.locator("#q-heightCm")).to_have_value("182")


async def test_someone_who_is_not_a_member_is_told_how_to_be_added_and_it_stops_reconnecting(
    browser: Browser, demo_server: ServerProcess
) -> None:
    owner, stranger = f"alice-{uuid.uuid4().hex[:6]}", f"mallory-{uuid.uuid4().hex[:6]}"
    kit_id = await claimed_kit(demo_server, owner)
    seen: list[str] = []
    page = await open_page(browser, demo_server, kit_id, token(stranger), seen)

    await expect(page.locator("#status")).to_have_text("not a member")
    error = page.locator("#error")
    await expect(error).to_contain_text(f"You are not a member of kit {kit_id}")
    await expect(error).to_contain_text("ask the kit's owner to add you")
    await expect(error).to_contain_text(f"PUT /v1/kits/{kit_id}/members/{stranger}")
    attempts = len(seen)
    await asyncio.sleep(5)  # EventSource and the WebSocket would have retried by now
    assert len(seen) == attempts
    await expect(page.locator("#status")).to_have_text("not a member")
    await expect(page.locator("#q-heightCm")).to_be_disabled()


async def test_an_expired_token_is_reported_as_invalid_or_expired(
    browser: Browser, demo_server: ServerProcess
) -> None:
    owner = f"alice-{uuid.uuid4().hex[:6]}"
    kit_id = await claimed_kit(demo_server, owner)
    expired = mint_token(
        TEST_SECRET.encode(), sub=owner, ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=2)
    )
    seen: list[str] = []
    page = await open_page(browser, demo_server, kit_id, expired, seen)

    await expect(page.locator("#status")).to_have_text("signed out")
    await expect(page.locator("#error")).to_contain_text("Your token is invalid or has expired")
    await asyncio.sleep(2)
    assert seen == []  # nothing live was even tried with it


async def test_banners_and_presence_name_questions_by_their_text_not_their_id(
    browser: Browser, demo_server: ServerProcess
) -> None:
    owner, editor = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    kit_id = await claimed_kit(demo_server, owner, editor)
    alice = await open_demo(browser, demo_server, kit_id, owner)
    bob = await open_demo(browser, demo_server, kit_id, editor)

    await bob.focus("#q-weightKg")
    await expect(alice.locator("#presence")).to_contain_text(
        f"{editor} · \u201cWhat is your weight in kilograms?\u201d"
    )
    await bob.fill("#q-heightCm", "182")
    await bob.press("#q-heightCm", "Tab")
    await expect(alice.locator("#q-heightCm")).to_have_value("182")
    await expect(alice.locator("#log")).to_contain_text("What is your height in centimetres?")

    await alice.evaluate("state.version = 0")  # Alice's view pinned before Bob's edit
    await alice.fill("#q-heightCm", "175")
    await alice.press("#q-heightCm", "Tab")
    conflict = alice.locator("#conflict")
    await expect(conflict).to_contain_text(
        f"Someone else changed {HEIGHT} (by {editor}, version 1)"
    )
    await expect(conflict).not_to_contain_text("heightCm")
    await expect(alice.locator("#presence")).not_to_contain_text("weightKg")

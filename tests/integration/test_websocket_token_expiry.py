"""A WebSocket write is checked against the token's ``exp`` when it arrives (issue #15.1).

Over a live server the expiry timer closes the socket at ``exp`` and races any later write, so
a test there cannot tell whether the write itself was checked. In-process, the service's wall
clock as the WebSocket session reads it is moved past ``exp`` while the loop's clock (which
drives the timer) is not: only the check at the write can refuse it.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.realtime import websocket as websocket_session
from tests.support.asgi import websocket_conversation
from tests.support.tokens import auth, token

pytestmark = pytest.mark.asyncio


async def test_a_websocket_write_after_exp_is_refused_4401_and_saves_nothing(
    app: FastAPI, client: httpx.AsyncClient, kit_id: str, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await client.post(f"/v1/kits/{kit_id}/claim", headers=auth(user))).status_code == 201
    path = f"/v1/kits/{kit_id}/health-information/ws?access_token={token(user, ttl_seconds=600)}"
    async with websocket_conversation(app, path, {}) as ws:
        while (await ws.receive_json())["type"] != "presence":
            pass  # the opening messages
        later = time.time() + 3600  # an hour after the token's exp, as the session sees it
        monkeypatch.setattr(websocket_session, "time", SimpleNamespace(time=lambda: later))
        await ws.send_json({"type": "update", "requestId": "r1", "answers": {"heightCm": 170}})
        replies = [await ws.receive()]
        while replies[-1]["type"] != "websocket.close":
            replies.append(await ws.receive())
    texts = [m for m in replies if m["type"] == "websocket.send"]
    assert not any('"ack"' in m["text"] for m in texts), texts
    assert any('"status":401' in m["text"].replace(" ", "") for m in texts), texts
    assert replies[-1]["code"] == 4401
    saved = await client.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    assert saved.status_code == 404  # nothing was written

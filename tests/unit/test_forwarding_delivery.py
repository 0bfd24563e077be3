"""One delivery attempt over httpx's MockTransport: the exact request, and how outcomes map."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from healthinfo.forwarding.delivery import Outcome, Sender, classify
from healthinfo.forwarding.outbox import encode_payload
from healthinfo.forwarding.signing import verify

SECRET = b"lab-secret-0123456789abcdef0123456789"
URL = "https://lab.example/events"
NOW = 1_767_225_600


def sender_for(handler: httpx.MockTransport) -> Sender:
    client = httpx.AsyncClient(transport=handler)
    return Sender(url=URL, secret=SECRET, timeout_seconds=1, client=client, unix_time=lambda: NOW)


def body() -> bytes:
    return encode_payload(
        event_id="e-1",
        event_type="health-information.submitted",
        occurred_at=datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=UTC),
        kit_id="K1",
        version=3,
        representation={"kitId": "K1", "answers": {"notes": "Grüße"}},
    ).encode()


def test_the_payload_is_the_contract_body_as_compact_json() -> None:
    raw = body()
    event = json.loads(raw)
    assert list(event) == ["eventId", "type", "occurredAt", "kitId", "version", "healthInformation"]
    assert event["occurredAt"] == "2026-11-24T10:00:00.123Z"
    assert raw == json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    assert "Grüße".encode() in raw  # UTF-8 as is, not \\u escapes


async def test_the_request_carries_the_signed_bytes_and_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    result = await sender_for(httpx.MockTransport(handler)).send("e-1", body())
    assert result.outcome is Outcome.DELIVERED
    assert result.status == 202
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.content == body()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "e-1"
    header = request.headers["x-healthinfo-signature"]
    assert header.startswith(f"t={NOW},v1=")
    assert verify(SECRET, header, request.content, now=NOW)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (201, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (301, Outcome.RETRY),
        (400, Outcome.DEAD),
        (401, Outcome.DEAD),
        (404, Outcome.DEAD),
        (408, Outcome.RETRY),
        (409, Outcome.DEAD),
        (422, Outcome.DEAD),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


async def test_a_redirect_is_not_followed_but_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "https://elsewhere.example/"})

    result = await sender_for(httpx.MockTransport(handler)).send("e-1", body())
    assert (result.outcome, result.status, result.error) == (Outcome.RETRY, 307, "HTTP 307")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("refused"), "transport error (ConnectError)"),
        (httpx.ReadTimeout("slow"), "timeout (ReadTimeout)"),
        (httpx.RemoteProtocolError("dropped"), "transport error (RemoteProtocolError)"),
    ],
)
async def test_network_failures_are_retried(error: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    result = await sender_for(httpx.MockTransport(handler)).send("e-1", body())
    assert (result.outcome, result.status, result.error) == (Outcome.RETRY, None, expected)

"""The redaction policy shared by logs, spans and error reports."""

from __future__ import annotations

import pytest

from healthinfo.infra.redaction import REDACTED, key_is_sensitive, redact_mapping, scrub_text

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXRoYXQtbG9va3MtcmVhbA"
)


@pytest.mark.parametrize(
    "key",
    [
        "answers",
        "answer_values",
        "answerValue",
        "value",
        "body",
        "reason",
        "notes",
        "free_text",
        "freeText",
        "access_token",
        "accessToken",
        "Authorization",
        "cookie",
        "email",
        "phone_number",
        "query_string",
        "password",
    ],
)
def test_sensitive_keys_are_recognised_in_any_spelling(key: str) -> None:
    assert key_is_sensitive(key)


@pytest.mark.parametrize(
    "key", ["event", "kits", "relay", "event_id", "operation", "kind", "status", "route", "rows"]
)
def test_structural_keys_are_not_sensitive(key: str) -> None:
    assert not key_is_sensitive(key)


def test_sensitive_keys_are_masked_whatever_their_value() -> None:
    cleaned = redact_mapping(
        {
            "answers": {"heightCm": 180, "smoker": False},
            "reason": "Lab phoned",
            "notes": ["a", "b"],
            "version": 3,
            "nested": {"body": "x", "count": 2, "deeper": [{"answerValue": "y"}]},
        }
    )
    assert cleaned == {
        "answers": REDACTED,
        "reason": REDACTED,
        "notes": REDACTED,
        "version": 3,
        "nested": {"body": REDACTED, "count": 2, "deeper": [{"answerValue": REDACTED}]},
    }


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"token {JWT} refused", JWT),
        (f"Authorization: Bearer {JWT}", JWT),
        ("Bearer opaque-token-123", "opaque-token-123"),
        (f"GET /v1/kits/K1/health-information/events?access_token={JWT} HTTP/1.1", JWT),
        ("GET /x?lastEventId=7&access_token=abc.def", "abc.def"),
        ("access_token=plain-secret", "plain-secret"),
        ("write to jane.doe+kit@example.co.uk please", "jane.doe+kit@example.co.uk"),
        ("call +44 20 7946 0958 today", "7946 0958"),
        ("call 555-867-5309 today", "867-5309"),
        ("call (030) 1234 5678", "1234 5678"),
        ('"WebSocket /v1/kits/KIT-secret-1/health-information/ws" [accepted]', "KIT-secret-1"),
        ("PUT /kits/K9/members/user-77", "user-77"),
    ],
)
def test_free_text_is_scrubbed_of_what_must_not_leave(text: str, secret: str) -> None:
    assert secret not in scrub_text(text)


def test_source_paths_in_exception_frames_are_not_taken_for_kit_ids() -> None:
    frame = "/work/main/src/healthinfo/kits/rest.py:55 in claim_kit"
    assert scrub_text(frame) == frame


@pytest.mark.parametrize(
    "text",
    [
        "cache.warmed",
        "Started server process [18530]",
        "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
        "Running upgrade 0003 -> 0004, Idempotency keys with their stored responses.",
        "/v1/kits/{kitId}/health-information",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_structural_keys_keep_their_values_at_the_top_level_only() -> None:
    line = {
        "timestamp": "2026-11-24T10:00:00.123456Z",
        "request_id": "12345678-1234-1234-1234-123456789012",
        "event": "http.request",
        "nested": {"timestamp": "call 555-867-5309"},
    }
    cleaned = redact_mapping(line)
    assert cleaned["timestamp"] == line["timestamp"]
    assert cleaned["request_id"] == line["request_id"]
    assert cleaned["nested"] == {"timestamp": f"call {REDACTED}"}


def test_non_text_values_pass_and_odd_objects_are_scrubbed_as_text() -> None:
    class Thing:
        def __str__(self) -> str:
            return f"thing with {JWT}"

    cleaned = redact_mapping({"count": 3, "ok": True, "none": None, "ratio": 0.5, "x": Thing()})
    assert cleaned["count"] == 3
    assert cleaned["ok"] is True
    assert cleaned["none"] is None
    assert cleaned["ratio"] == 0.5
    assert JWT not in cleaned["x"]

"""Sentry's before_send and before_breadcrumb: what an error report may carry. No network."""

from __future__ import annotations

import json
import logging
from typing import Any

from healthinfo.infra.error_tracking import (
    before_breadcrumb,
    before_send,
    configure_error_tracking,
    sentry_options,
)

TEXT = "MARKER-s3n7"
EMAIL = "marker.s3n7@example.org"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl"


def starlette_event() -> dict[str, Any]:
    """Shaped like what sentry-sdk's Starlette integration builds for an unhandled error."""
    return {
        "level": "error",
        "request": {
            "method": "PUT",
            "url": f"http://api.example/v1/kits/K1/health-information?access_token={JWT}",
            "query_string": f"access_token={JWT}",
            "headers": {
                "Authorization": f"Bearer {JWT}",
                "Cookie": f"session={JWT}",
                "Content-Type": "application/json",
                "X-Request-ID": "req-1",
                "User-Agent": "app/1.0",
            },
            "cookies": {"session": JWT},
            "data": {"answers": {"medications": TEXT}},
            "env": {"REMOTE_ADDR": "203.0.113.7"},
        },
        "user": {"ip_address": "203.0.113.7", "id": "u-1"},
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"bad answer {TEXT} from {EMAIL}",
                    "stacktrace": {
                        "frames": [
                            {"function": "save", "lineno": 3, "vars": {"answers": TEXT}},
                        ]
                    },
                }
            ]
        },
        "logentry": {"message": f"saving for {EMAIL}", "params": [TEXT, {"notes": TEXT}]},
        "extra": {"answers": {"x": TEXT}, "kits": 3, "note_text": TEXT},
        "tags": {"route": "/v1/kits/{kitId}/health-information"},
        "breadcrumbs": {
            "values": [
                {
                    "category": "httpx",
                    "message": f"POST https://lab.example/in?key={JWT}",
                    "data": {"url": f"https://lab.example/in?key={JWT}", "reason": TEXT},
                },
                {"category": "healthinfo", "message": f"call {EMAIL}", "data": {"kits": 2}},
            ]
        },
    }


def test_before_send_keeps_no_body_query_credential_or_value() -> None:
    event = before_send(starlette_event(), {})
    assert event is not None
    text = json.dumps(event)
    for secret in (TEXT, EMAIL, JWT, "203.0.113.7", "access_token", "session="):
        assert secret not in text, secret
    request = event["request"]
    assert request == {
        "method": "PUT",
        "url": "http://api.example/v1/kits/{kitId}/health-information",
        "headers": {"Content-Type": "application/json", "X-Request-ID": "req-1"},
    }
    assert "user" not in event
    exception = event["exception"]["values"][0]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "[redacted]"
    assert "vars" not in exception["stacktrace"]["frames"][0]
    assert exception["stacktrace"]["frames"][0]["function"] == "save"
    assert event["extra"]["kits"] == 3
    assert event["tags"] == {"route": "/v1/kits/{kitId}/health-information"}
    crumbs = event["breadcrumbs"]["values"]
    assert crumbs[0]["data"]["url"] == "https://lab.example/in"
    assert crumbs[1]["data"] == {"kits": 2}


def test_before_breadcrumb_redacts_structlog_lines_by_their_keys() -> None:
    record = logging.LogRecord("healthinfo.x", logging.INFO, __file__, 1, {}, None, None)
    record.msg = {"event": "health_information.saved", "answers": {"a": TEXT}, "version": 4}
    crumb = before_breadcrumb(
        {"category": "healthinfo.x", "message": str(record.msg), "data": {}},
        {"log_record": record},
    )
    assert crumb is not None
    assert crumb["message"] == "health_information.saved"
    assert crumb["data"] == {"answers": "[redacted]", "version": 4}


def test_the_client_is_configured_without_pii_bodies_or_local_variables() -> None:
    options = sentry_options("https://key@sentry.example/1", environment="production")
    collection = options["data_collection"]
    assert collection["user_info"] is False
    assert collection["http_bodies"] == []
    assert collection["stack_frame_variables"] is False
    assert collection["cookies"] == {"mode": "off"}
    assert collection["url_query_params"] == {"mode": "off"}
    assert "authorization" not in collection["http_headers"]["request"]["terms"]
    assert options["max_request_body_size"] == "never"
    assert options["before_send_log"]({"body": "x"}, {}) is None
    assert options["before_send"] is before_send
    assert options["before_breadcrumb"] is before_breadcrumb
    names = {type(i).__name__ for i in options["integrations"]}
    assert names == {"StarletteIntegration", "FastApiIntegration"}


def test_no_dsn_no_sentry() -> None:
    assert configure_error_tracking(None, environment="test") is False
    assert configure_error_tracking("", environment="test") is False


def test_the_installed_sentry_sdk_accepts_every_option() -> None:
    """sentry-sdk refuses an unknown option with TypeError: serve would crash at start-up."""
    import sentry_sdk

    # Port 9 (discard) on loopback: nothing is ever delivered anywhere.
    options = sentry_options("https://key@127.0.0.1:9/1", environment="test")
    sentry_sdk.init(**options)
    try:
        assert sentry_sdk.get_client().is_active()
    finally:
        sentry_sdk.get_client().close(timeout=0)
        sentry_sdk.init()  # back to the inactive client for the rest of the run

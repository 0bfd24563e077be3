"""Log configuration: one handler however often configured, ids on lines, safe exceptions."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from healthinfo.api.middleware import current_request_id
from healthinfo.infra.logging import (
    StdoutHandler,
    configure_logging,
    describe_exception,
    incoming_trace_id,
    trace_id_from_traceparent,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_configuring_twice_keeps_one_handler() -> None:
    configure_logging(level="INFO", json=True)
    configure_logging(level="INFO", json=True)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, StdoutHandler)]
    assert len(handlers) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE_ID}-b7ad6b7169203331-01", TRACE_ID),
        (f" 00-{TRACE_ID.upper()}-b7ad6b7169203331-00 ", TRACE_ID),
        (f"ff-{TRACE_ID}-b7ad6b7169203331-01", None),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        (f"00-{TRACE_ID}-0000000000000000-01", None),
        ("garbage", None),
        (None, None),
    ],
)
def test_trace_ids_come_only_from_valid_traceparents(header: str | None, expected: str) -> None:
    assert trace_id_from_traceparent(header) == expected


def test_stdlib_and_structlog_lines_share_the_format_ids_and_redaction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=True)
    capsys.readouterr()
    request_token = current_request_id.set("req-1")
    trace_token = incoming_trace_id.set(TRACE_ID)
    try:
        logging.getLogger("healthinfo.test").info(
            "health_information.saved", extra={"version": 2, "answers": {"a": 1}}
        )
        structlog.get_logger("healthinfo.test").info(
            "health_information.saved", version=2, reason="typed by the patient"
        )
    finally:
        incoming_trace_id.reset(trace_token)
        current_request_id.reset(request_token)
    stdlib, native = lines(capsys)
    for line in (stdlib, native):
        assert line["event"] == "health_information.saved"
        assert line["level"] == "info"
        assert line["logger"] == "healthinfo.test"
        assert line["request_id"] == "req-1"
        assert line["trace_id"] == TRACE_ID
        assert line["version"] == 2
    assert stdlib["answers"] == "[redacted]"
    assert native["reason"] == "[redacted]"


def test_exceptions_are_logged_as_type_and_frames_without_their_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=True)
    capsys.readouterr()
    try:
        try:
            raise KeyError("secret-question")
        except KeyError as inner:
            raise ValueError("the answer was SECRET-VALUE") from inner
    except ValueError:
        logging.getLogger("healthinfo.test").exception("thing.failed")
    output = capsys.readouterr().out
    assert "SECRET-VALUE" not in output
    assert "secret-question" not in output
    (line,) = [json.loads(text) for text in output.splitlines()]
    exception = line["exception"]
    assert exception["type"] == "ValueError"
    assert exception["causes"] == ["KeyError"]
    assert any("test_logging.py" in frame for frame in exception["frames"])


def test_describe_exception_names_non_builtin_types_with_their_module() -> None:
    class LocalError(Exception):
        pass

    assert describe_exception(LocalError("x"))["type"].endswith(".LocalError")


def test_uvicorn_debug_chatter_is_dropped_and_its_info_lines_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="DEBUG", json=True)
    capsys.readouterr()
    try:
        uvicorn = logging.getLogger("uvicorn.error")
        uvicorn.debug("< TEXT '%s' [80 bytes]", '{"answers": {"medications": "SECRET"}}')
        uvicorn.info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:1", "/v1/kits/K77/ws?access_token=abc"
        )
        logging.getLogger("uvicorn.access").info("GET /v1/kits/K77?access_token=abc 200")
    finally:
        configure_logging(level="INFO", json=True)
    (line,) = lines(capsys)
    assert (
        line["event"]
        == '127.0.0.1:1 - "WebSocket /v1/kits/{kitId}/ws?access_token=[redacted]" [accepted]'
    )

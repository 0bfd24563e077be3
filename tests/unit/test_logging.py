"""Log configuration: one handler however often configured, ids on lines, safe exceptions."""

from __future__ import annotations

import json
import logging
import os
import select
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import structlog

from healthinfo.api.middleware import current_request_id
from healthinfo.config import Settings
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


# --- the renderer: JSON unless a person reads the terminal ------------------------------------

ANSI_ESCAPE = "\x1b["


def log_an_answer_and_a_reason() -> None:
    logging.getLogger("healthinfo.test").info(
        "health_information.saved",
        extra={"version": 2, "answers": {"medications": "SECRET-ANSWER"}},
    )
    structlog.get_logger("healthinfo.test").info(
        "amendment.recorded", reason="SECRET-REASON", path="/v1/kits/KIT-SECRET/history"
    )


def test_console_layout_never_shows_a_redacted_fields_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=False)
    capsys.readouterr()
    try:
        log_an_answer_and_a_reason()
    finally:
        configure_logging(level="INFO", json=True)
    output = capsys.readouterr().out
    for secret in ("SECRET-ANSWER", "SECRET-REASON", "KIT-SECRET", "medications"):
        assert secret not in output
    assert "answers=[redacted]" in output
    assert "reason=[redacted]" in output
    assert "path=/v1/kits/{kitId}/history" in output


def test_console_layout_is_one_readable_line_per_event_not_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=False)
    capsys.readouterr()
    try:
        structlog.get_logger("healthinfo.test").info("cache.warmed", kits=3)
    finally:
        configure_logging(level="INFO", json=True)
    (line,) = capsys.readouterr().out.splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "[info     ] cache.warmed" in line
    assert "kits=3" in line
    assert "[healthinfo.test]" in line


def test_console_layout_shows_exceptions_as_type_and_frames_without_their_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=False)
    capsys.readouterr()
    try:
        try:
            try:
                raise KeyError("secret-question")
            except KeyError as inner:
                raise ValueError("the answer was SECRET-VALUE") from inner
        except ValueError:
            logging.getLogger("healthinfo.test").exception("thing.failed")
    finally:
        configure_logging(level="INFO", json=True)
    output = capsys.readouterr().out
    assert "SECRET-VALUE" not in output
    assert "secret-question" not in output
    assert "ValueError (caused by KeyError)" in output
    assert "test_logging.py:" in output


def test_a_forced_console_layout_has_no_colours_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=False)
    capsys.readouterr()
    try:
        structlog.get_logger("healthinfo.test").warning("cache.degraded")
    finally:
        configure_logging(level="INFO", json=True)
    output = capsys.readouterr().out
    assert "cache.degraded" in output
    assert ANSI_ESCAPE not in output


def test_auto_writes_json_lines_when_stdout_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(level="INFO", json=None)
    capsys.readouterr()
    try:
        log_an_answer_and_a_reason()
    finally:
        configure_logging(level="INFO", json=True)
    stdlib, native = lines(capsys)
    assert stdlib["answers"] == "[redacted]"
    assert native["reason"] == "[redacted]"


@contextmanager
def stdout_on_a_terminal() -> Iterator[Callable[[], str]]:
    """``sys.stdout`` on a real pseudo-terminal; the callable reads what reached it.

    Entered inside the test: pytest puts its own capture back on ``sys.stdout`` between the
    setup of a fixture and the test's call.
    """
    leader, follower = os.openpty()
    stream = open(follower, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 - closed below
    saved = sys.stdout
    sys.stdout = stream

    def read() -> str:
        stream.flush()
        chunks: list[bytes] = []
        while select.select([leader], [], [], 0.2)[0]:
            chunks.append(os.read(leader, 65536))
        return b"".join(chunks).decode("utf-8")

    try:
        yield read
    finally:
        sys.stdout = saved
        configure_logging(level="INFO", json=True)
        stream.close()
        os.close(leader)


def test_auto_uses_the_coloured_console_layout_when_stdout_is_a_terminal() -> None:
    with stdout_on_a_terminal() as output_so_far:
        configure_logging(level="INFO", json=None)
        log_an_answer_and_a_reason()
        output = output_so_far()
    assert ANSI_ESCAPE in output
    assert "health_information.saved" in output
    assert "amendment.recorded" in output
    assert not output.lstrip().startswith("{")
    for secret in ("SECRET-ANSWER", "SECRET-REASON", "KIT-SECRET"):
        assert secret not in output


def test_json_forced_on_a_terminal_stays_json() -> None:
    with stdout_on_a_terminal() as output_so_far:
        configure_logging(level="INFO", json=True)
        structlog.get_logger("healthinfo.test").info("cache.warmed", kits=3)
        output = output_so_far()
    (line,) = [json.loads(text) for text in output.splitlines() if text.strip()]
    assert line["event"] == "cache.warmed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("false", False), ("0", False), ("auto", None), ("AUTO", None)],
)
def test_log_json_setting_is_true_false_or_auto(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool | None
) -> None:
    monkeypatch.setenv("HEALTHINFO_LOG_JSON", value)
    assert Settings(_env_file=None).log_json is expected  # type: ignore[call-arg]


def test_log_json_is_auto_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEALTHINFO_LOG_JSON", raising=False)
    assert Settings(_env_file=None).log_json is None  # type: ignore[call-arg]

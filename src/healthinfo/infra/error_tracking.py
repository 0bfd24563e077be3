"""Sentry error tracking, on when ``HEALTHINFO_SENTRY_DSN`` is set (docs/operations.md).

Sentry sees the exception's type and stack, the route template, the request id and the
release; never health data:

* ``data_collection`` with user info, cookies, bodies, query parameters, frame variables and
  database query data off, headers from an allow-list; no request bodies
  (``max_request_body_size="never"``); no Sentry logs (``before_send_log`` drops them);
* ``before_send`` keeps of the request only its method, its URL without the query string
  (``?access_token=<JWT>``) and a few harmless headers (never ``Authorization`` or ``Cookie``);
  masks every exception *message* (``ValueError(f"… {answer}")`` would quote a value; the type
  and stack are what groups an issue) and the arguments of logged messages; runs the log
  redaction (``infra/redaction.py``) over messages, extra data, tags and breadcrumbs; drops the
  user and any frame variables;
* ``before_breadcrumb`` does the same to breadcrumbs recorded from log lines.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from healthinfo import __version__
from healthinfo.infra.redaction import REDACTED, redact_mapping, scrub_text

SAFE_HEADERS = frozenset(
    {"accept", "accept-encoding", "content-length", "content-type", "host", "x-request-id"}
)


def _url_without_query(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return REDACTED
    return scrub_text(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _clean_request(request: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if isinstance(request.get("method"), str):
        cleaned["method"] = request["method"]
    if isinstance(request.get("url"), str):
        cleaned["url"] = _url_without_query(request["url"])
    headers = request.get("headers")
    if isinstance(headers, dict):
        cleaned["headers"] = {
            name: scrub_text(str(value))
            for name, value in headers.items()
            if str(name).lower() in SAFE_HEADERS
        }
    return cleaned


def _clean_frames(container: Any) -> None:
    if not isinstance(container, dict):
        return
    stacktrace = container.get("stacktrace")
    if isinstance(stacktrace, dict):
        for frame in stacktrace.get("frames") or ():
            if isinstance(frame, dict):
                frame.pop("vars", None)


def before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(event.get("request"), dict):
        event["request"] = _clean_request(event["request"])
    event.pop("user", None)
    exceptions = event.get("exception")
    for value in (exceptions or {}).get("values") or ():
        if isinstance(value, dict):
            if value.get("value"):
                value["value"] = REDACTED
            _clean_frames(value)
    for thread in (event.get("threads") or {}).get("values") or ():
        _clean_frames(thread)
    if isinstance(event.get("message"), str):
        event["message"] = scrub_text(event["message"])
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        if isinstance(logentry.get("message"), str):
            logentry["message"] = scrub_text(logentry["message"])
        # The template stays; its arguments (and the message formatted with them) could be
        # anything a library passed, so they never leave.
        logentry.pop("formatted", None)
        if logentry.get("params"):
            logentry["params"] = [REDACTED for _ in logentry["params"]]
    for key in ("extra", "tags"):
        if isinstance(event.get(key), dict):
            event[key] = redact_mapping(event[key], depth=1)
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict) and isinstance(breadcrumbs.get("values"), list):
        breadcrumbs["values"] = [
            clean for crumb in breadcrumbs["values"] if (clean := _clean_breadcrumb(crumb))
        ]
    return event


def _clean_breadcrumb(crumb: Any) -> dict[str, Any] | None:
    if not isinstance(crumb, dict):
        return None
    if isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_text(crumb["message"])
    if isinstance(crumb.get("data"), dict):
        data = crumb["data"]
        if isinstance(data.get("url"), str):
            data["url"] = _url_without_query(data["url"])
        crumb["data"] = redact_mapping(data, depth=1)
    return crumb


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    record = (hint or {}).get("log_record")
    if isinstance(record, logging.LogRecord) and isinstance(record.msg, dict):
        # A structlog line: its message is the event name, its fields go through redaction.
        fields = dict(record.msg)
        crumb["message"] = str(fields.pop("event", ""))
        crumb["data"] = {**(crumb.get("data") or {}), **fields}
    return _clean_breadcrumb(crumb)


def _drop_log(_log: Any, _hint: Any) -> None:
    """Sentry logs stay off: our log lines go to our log pipeline, never to a third party."""
    return


def sentry_options(dsn: str, *, environment: str) -> dict[str, Any]:
    """The keyword arguments for ``sentry_sdk.init``; a function so tests can check them.

    sentry-sdk 3 replaced ``send_default_pii``, ``include_local_variables`` and the
    integrations' knobs with one ``data_collection`` option: everything that could carry a
    person's data is off there, and ``before_send`` still cleans what is left.
    """
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    off: dict[str, Any] = {"mode": "off"}
    return {
        "dsn": dsn,
        "environment": environment,
        "release": f"healthinfo@{__version__}",
        "data_collection": {
            "user_info": False,
            "cookies": off,
            "http_headers": {
                "request": {"mode": "allowlist", "terms": sorted(SAFE_HEADERS)},
            },
            "http_bodies": [],
            "url_query_params": off,
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
            "gen_ai": {"inputs": False, "outputs": False},
        },
        "max_request_body_size": "never",
        "before_send_log": _drop_log,
        "traces_sample_rate": None,  # tracing is OpenTelemetry's job (infra/tracing.py)
        "before_send": before_send,
        "before_breadcrumb": before_breadcrumb,
        "integrations": [StarletteIntegration(), FastApiIntegration()],
    }


def configure_error_tracking(dsn: str | None, *, environment: str) -> bool:
    """Start Sentry when a DSN is configured; returns whether it did. Idempotent."""
    if not dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(**sentry_options(dsn, environment=environment))
    return True

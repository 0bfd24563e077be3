"""Keep bearer tokens out of server logs.

Browsers' EventSource and WebSocket cannot set headers, so the live routes accept
``?access_token=<JWT>``; uvicorn logs the path *with* its query string (the access log, and the
WebSocket ``[accepted]`` lines on ``uvicorn.error``). This filter rewrites the value to
``[redacted]`` in the message and its arguments before any handler formats the record.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
_TOKEN = re.compile(r"(access_token=)[^&\s\"']*", re.IGNORECASE)
LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def redact(text: str) -> str:
    return _TOKEN.sub(r"\g<1>" + REDACTED, text)


class AccessTokenFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        return True


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def install_token_redaction(loggers: tuple[str, ...] = LOGGERS) -> None:
    """Idempotent: adds the filter to each logger once."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, AccessTokenFilter) for f in logger.filters):
            logger.addFilter(AccessTokenFilter())

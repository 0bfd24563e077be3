"""One redaction policy for every way data leaves the process: logs, traces, error reports.

Health data must never reach a log line, a span or an error report. Two rules, both applied
recursively to nested dicts and lists:

* **Keys decide first.** A key made of a word like ``answers``, ``value``, ``body``, ``reason``,
  ``notes``, ``text``, ``token``, ``authorization``, ``cookie``, ``email`` or ``phone`` is
  masked entirely, whatever its value (``answer_values``, ``freeText`` and ``accessToken``
  included: keys are split into words at ``_``, ``-``, ``.`` and camelCase humps).
* **Strings are scrubbed.** Any other string is searched for what must never leave even inside
  free text: JWTs (``eyJ….….…``), ``Bearer …`` credentials, ``access_token=…`` and every other
  query-parameter value, e-mail addresses, phone numbers, and kit or user ids in API paths.

Numbers, booleans and ``None`` pass: they are counts, versions, durations and statuses.
``STRUCTURAL_KEYS`` (timestamps, levels, ids we mint, route templates) are left alone so the
phone-number rule does not eat timestamps.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
MAX_DEPTH = 8

SENSITIVE_WORDS = frozenset(
    {
        "answer",
        "answers",
        "value",
        "values",
        "body",
        "bodies",
        "reason",
        "reasons",
        "note",
        "notes",
        "comment",
        "comments",
        "text",
        "freetext",
        "token",
        "tokens",
        "jwt",
        "bearer",
        "authorization",
        "auth",
        "cookie",
        "cookies",
        "password",
        "passwd",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "email",
        "mail",
        "phone",
        "payload",
        "query",
        "querystring",
        "signature",
        "dsn",
        "data",
        "content",
        "patch",
    }
)

STRUCTURAL_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "request_id",
        "trace_id",
        "span_id",
        "route",
        "method",
        "duration_ms",
    }
)

_WORD_BOUNDARY = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON Web Tokens (and anything shaped like one): header.payload.signature.
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (
        re.compile(r"(?i)\b(access_token|token|authorization)([=:]\s*)[^\s&\"',;]+"),
        r"\1\2" + REDACTED,
    ),
    # Every query-parameter value (``?access_token=…``, ``&lastEventId=…``).
    (re.compile(r"([?&][^=&\s\"'#?]+=)[^&\s\"'#]*"), r"\1" + REDACTED),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), REDACTED),
    # Phone numbers: nine or more digits, optionally with +, spaces, dots, dashes, parentheses.
    (re.compile(r"(?<![\w.])(?:\+|00)?\(?\d(?:[ ().-]{0,2}\d){8,15}(?![\w])"), REDACTED),
    # Kit and member ids in API paths (uvicorn's own lines carry raw paths).
    # A kit id's shape (no dots), so source paths like ``healthinfo/kits/rest.py`` stay.
    (re.compile(r"(/kits/)[A-Za-z0-9][A-Za-z0-9_-]{0,63}(?![A-Za-z0-9_.-])"), r"\1{kitId}"),
    (re.compile(r"(/members/)[^/\s?\"'#]+"), r"\1{userId}"),
)


def key_is_sensitive(key: object) -> bool:
    return isinstance(key, str) and _name_is_sensitive(key)


@functools.lru_cache(maxsize=4096)
def _name_is_sensitive(key: str) -> bool:
    """Cached: every log line asks about the same few field names (a third of a line's CPU)."""
    words = {w.lower() for w in _WORD_BOUNDARY.split(key) if w}
    return bool(words & SENSITIVE_WORDS) or key.lower().replace("_", "") in SENSITIVE_WORDS


def scrub_text(text: str) -> str:
    """Remove tokens, query values, e-mail addresses, phone numbers and ids from free text."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    """Redact a value of a key that is not sensitive itself (nested keys are still checked)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes | bytearray):
        return REDACTED
    if depth >= MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return redact_mapping(value, depth + 1)
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth + 1) for item in value]
    return scrub_text(str(value))


def redact_mapping(data: Mapping[Any, Any], depth: int = 0) -> dict[Any, Any]:
    """A copy of ``data`` with sensitive keys masked and every other value redacted."""
    cleaned: dict[Any, Any] = {}
    for key, value in data.items():
        if key_is_sensitive(key):
            cleaned[key] = REDACTED
        elif key in STRUCTURAL_KEYS and depth == 0:
            cleaned[key] = value
        else:
            cleaned[key] = redact_value(value, depth)
    return cleaned

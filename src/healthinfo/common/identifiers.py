"""Identifiers and header values must be printable before they reach SQL, logs or headers.

PostgreSQL refuses a NUL character in text (a 500 if it got that far), and a control character
in a user id, a key or a cursor is never legitimate: a carriage return or an escape sequence
in an audited id is log injection waiting to happen. So every identifier a client sends (path
segments, ``Idempotency-Key``, a token's ``sub``) is refused with 422 (401 for ``sub``) when it
holds a C0 control character, DEL or a C1 control character. Free text the client does not
choose as an identifier (``User-Agent``) is kept with those characters removed.
"""

from __future__ import annotations

import re

_CONTROL = r"\x00-\x1f\x7f-\x9f"
CONTROL_CHARACTERS = re.compile(f"[{_CONTROL}]")
# For FastAPI path and query parameters (documented in the OpenAPI as the parameter's pattern).
PRINTABLE_PATTERN = f"^[^{_CONTROL}]+$"


def is_printable(text: str) -> bool:
    """True when ``text`` holds no control character (C0, DEL, C1)."""
    return CONTROL_CHARACTERS.search(text) is None


def without_control_characters(text: str) -> str:
    return CONTROL_CHARACTERS.sub("", text)

"""The ``X-HealthInfo-Signature`` header: HMAC-SHA256 over ``"<t>.<body>"``.

The timestamp is part of what is signed, so a captured request cannot be replayed with a fresh
``t``; the lab rejects a ``t`` outside its replay window. ``verify`` is what the lab runs (and
what docs/forwarding.md shows); we keep it here so the two sides are tested against each other.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-HealthInfo-Signature"
SCHEME = "v1"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + body`` with ``secret``."""
    return hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The header value: ``t=<unix seconds>,v1=<hex>``."""
    return f"t={timestamp},{SCHEME}={signature(secret, timestamp, body)}"


def verify(
    secret: bytes, header: str, body: bytes, *, now: float, tolerance_seconds: float = 300
) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` and ``t`` is recent enough.

    Compares in constant time; accepts any of several ``v1=`` values (a secret rotation sends
    one per secret).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)

"""``If-Match`` evaluation with strong comparison (RFC 9110 §13.1.1): ``"3"`` matches version 3.

Weak tags never match If-Match; ``*`` matches when anything is saved. Kept free of HTTP types so
any channel that carries an expected version can use it.
"""

from __future__ import annotations

import re

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_satisfied(header: str, current_version: int | None) -> bool:
    if header.strip() == "*":
        return current_version is not None
    if current_version is None:
        return False
    return any(not weak and value == str(current_version) for weak, value in _parse_list(header))


def if_none_match_hits(header: str, current_version: int) -> bool:
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if header.strip() == "*":
        return True
    return any(value == str(current_version) for _weak, value in _parse_list(header))


def _parse_list(header: str) -> list[tuple[bool, str]]:
    tags = []
    for part in header.split(","):
        match = _TAG.fullmatch(part)
        if match:
            tags.append((match.group(1) is not None, match.group(2)))
    return tags

"""If-Match and If-None-Match evaluation."""

from __future__ import annotations

import pytest

from healthinfo.health_information.preconditions import etag, if_match_satisfied, if_none_match_hits


def test_etag_is_the_quoted_version() -> None:
    assert etag(7) == '"7"'


@pytest.mark.parametrize(
    ("header", "version", "expected"),
    [
        ('"3"', 3, True),
        ('"3"', 4, False),
        ("3", 3, False),
        ('W/"3"', 3, False),
        ('"2", "3"', 3, True),
        ("*", 1, True),
        ("*", None, False),
        ('"1"', None, False),
        ("garbage", 3, False),
    ],
)
def test_if_match_uses_strong_comparison(header: str, version: int | None, expected: bool) -> None:
    assert if_match_satisfied(header, version) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [('"3"', True), ('W/"3"', True), ('"2"', False), ("*", True), ('"1", "3"', True)],
)
def test_if_none_match_uses_weak_comparison(header: str, expected: bool) -> None:
    assert if_none_match_hits(header, 3) is expected

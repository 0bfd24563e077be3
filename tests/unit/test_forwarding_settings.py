"""Forwarding settings refuse what would break delivery, naming the variable."""

from __future__ import annotations

from typing import Any

import pytest

from healthinfo.config import SettingsError, load_settings

SECRET = "lab-shared-secret-0123456789abcdef0123"


def settings(**values: Any) -> Any:
    return load_settings(_env_file=None, environment="test", **values)


def test_forwarding_is_off_by_default_with_the_documented_defaults() -> None:
    loaded = settings()
    assert loaded.forward_url is None
    assert loaded.forward_timeout_seconds == 10
    assert loaded.forward_retry_initial_seconds == 1
    assert loaded.forward_retry_max_seconds == 60
    assert loaded.forward_give_up_after_seconds == 24 * 3600
    assert loaded.forward_in_process is True


def test_a_url_needs_a_long_enough_secret() -> None:
    with pytest.raises(SettingsError, match="HEALTHINFO_FORWARD_SECRET"):
        settings(forward_url="https://lab.example/events")
    with pytest.raises(SettingsError, match="HEALTHINFO_FORWARD_SECRET"):
        settings(forward_url="https://lab.example/events", forward_secret="short")
    loaded = settings(forward_url="https://lab.example/events", forward_secret=SECRET)
    assert loaded.forward_secret is not None


@pytest.mark.parametrize("url", ["ftp://lab.example/x", "lab.example/events", "https://"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(SettingsError, match="HEALTHINFO_FORWARD_URL"):
        settings(forward_url=url, forward_secret=SECRET)


def test_the_lease_must_outlast_a_request() -> None:
    with pytest.raises(SettingsError, match="HEALTHINFO_FORWARD_LEASE_SECONDS"):
        settings(
            forward_url="https://lab.example/events",
            forward_secret=SECRET,
            forward_timeout_seconds=10,
            forward_lease_seconds=15,
        )


def test_the_retry_cap_is_not_below_the_first_retry() -> None:
    with pytest.raises(SettingsError, match="HEALTHINFO_FORWARD_RETRY_MAX_SECONDS"):
        settings(
            forward_url="https://lab.example/events",
            forward_secret=SECRET,
            forward_retry_initial_seconds=5,
            forward_retry_max_seconds=1,
        )

"""HEALTHINFO_LEGACY_SUNSET: an RFC 3339 instant, or nothing."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from healthinfo.api.middleware import sunset_value
from healthinfo.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HEALTHINFO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_no_sunset_by_default() -> None:
    assert load_settings().legacy_sunset is None


def test_an_rfc_3339_instant_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_LEGACY_SUNSET", "2027-06-30T02:00:00+02:00")
    assert load_settings().legacy_sunset == datetime(2027, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2027-06-30T00:00:00", "next summer"])
def test_a_time_without_offset_or_not_a_time_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HEALTHINFO_LEGACY_SUNSET", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "HEALTHINFO_LEGACY_SUNSET" in str(caught.value)


def test_the_header_is_an_http_date_in_gmt() -> None:
    instant = datetime.fromisoformat("2027-06-30T02:00:00+02:00")
    assert sunset_value(instant) == b"Wed, 30 Jun 2027 00:00:00 GMT"

"""HEALTHINFO_AUDIT_READS: sync, batched (the default) or off, and the older boolean values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healthinfo.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HEALTHINFO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_reads_are_audited_in_batches_of_at_most_50_ms_by_default() -> None:
    settings = load_settings()
    assert settings.audit_reads == "batched"
    assert settings.audit_read_batch_ms == 50
    assert settings.audit_read_batch_size == 200
    assert settings.audit_read_max_pending == 1000


@pytest.mark.parametrize("mode", ["sync", "batched", "off", "SYNC"])
def test_each_mode_is_accepted_by_name(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("HEALTHINFO_AUDIT_READS", mode)
    assert load_settings().audit_reads == mode.lower()


@pytest.mark.parametrize(
    ("legacy", "mode"), [("true", "batched"), ("1", "batched"), ("false", "off")]
)
def test_the_older_boolean_values_still_work(
    monkeypatch: pytest.MonkeyPatch, legacy: str, mode: str
) -> None:
    monkeypatch.setenv("HEALTHINFO_AUDIT_READS", legacy)
    assert load_settings().audit_reads == mode


def test_a_percentage_rollout_is_refused_naming_the_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_AUDIT_READS", "25%")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "HEALTHINFO_AUDIT_READS" in str(caught.value)
    assert "sync, batched or off" in str(caught.value)


def test_a_batch_window_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_AUDIT_READ_BATCH_MS", "0")
    with pytest.raises(SettingsError, match="HEALTHINFO_AUDIT_READ_BATCH_MS"):
        load_settings()

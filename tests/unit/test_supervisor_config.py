"""``serve --workers N``: the supervisor's config (issue #16.5)."""

from __future__ import annotations

import pytest

from healthinfo.cli import supervisor_config
from healthinfo.config import load_settings


def test_the_worker_health_check_waits_thirty_seconds_by_default() -> None:
    # uvicorn's own 5 s killed every worker that was still importing on a loaded machine.
    config = supervisor_config(load_settings(), "127.0.0.1", 8000, 2)
    assert config.timeout_worker_healthcheck == 30


def test_the_worker_health_check_follows_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_WORKER_HEALTHCHECK_SECONDS", "90")
    config = supervisor_config(load_settings(), "127.0.0.1", 8000, 3)
    assert (config.timeout_worker_healthcheck, config.workers) == (90, 3)

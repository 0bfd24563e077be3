"""The export benchmark still runs: ``python -m bench.export --kits 300`` end to end.

A smoke test of the harness (docs/performance.md), not a performance test: every kit seeded is
exported by a real worker and every figure is a sane number, never that the export is fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
KITS = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("postgres" not in BACKENDS, reason="the bench runs on PostgreSQL"),
]


def test_export_bench_exports_every_seeded_kit_and_reports_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.export", "--kits", str(KITS), "--page-size", "100", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kits"] == KITS
    assert result["exported"] == KITS
    assert result["kits_per_second"] > 0
    assert 10 < result["worker_peak_rss_mib"] < 4096
    assert result["worker_cpu_seconds"] > 0
    assert 0 <= result["db_cpu_share"] <= 1

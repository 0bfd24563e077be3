"""The benchmark still runs: ``python -m bench --quick`` end to end, one concurrency level.

A smoke test of the harness (docs/performance.md), not a performance test: it checks that
every scenario produced a measurement with sane numbers and that the run cleaned up after
itself, never that the service is fast.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.backends import BACKENDS, PG_ADMIN_DSN

ROOT = Path(__file__).resolve().parents[2]
LEVEL = "2"
SCENARIOS = [
    "read_cache_hit",
    "read_cache_off",
    "read_no_ratelimit",
    "read_no_audit",
    "read_audit_sync",
    "read_heavy_mix",
    "patch",
    "patch_same_kit",
    "create",
    "submit",
    "redis_down_read",
    "redis_down_patch",
    "ceiling_asgi",
    "ceiling_fastapi",
    "ceiling_redis_py",
    "ceiling_sql_min",
    "ceiling_sql_min_ping",
    "ceiling_sql_full",
    "ceiling_fastapi_sync_deps",
    "ceiling_fastapi_async_deps",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("postgres" not in BACKENDS, reason="the bench runs on PostgreSQL + Redis"),
]


def bench_databases() -> set[str]:
    async def names() -> set[str]:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'healthinfo_bench_%'"
            )
        finally:
            await conn.close()
        return {row["datname"] for row in rows}

    return asyncio.run(names())


def run_bench(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``python -m bench --quick`` at one level: the finished process and its JSON results."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--levels", LEVEL, "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " failed: " not in done.stdout, done.stdout[-4000:]
    [found] = out.glob("*.json")
    return done, json.loads(found.read_text())


def test_quick_bench_measures_every_scenario(tmp_path: Path) -> None:
    before = bench_databases()
    done, results = run_bench(tmp_path)

    expected = SCENARIOS + (["ceiling_redis_benchmark"] if shutil.which("redis-benchmark") else [])
    for name in expected:
        runs = results["scenarios"][name]
        assert set(runs) == {LEVEL}, name
        m = runs[LEVEL]
        assert m["rps"] > 0, name
        assert 0 < m["p50_ms"] <= m["p95_ms"] <= m["p99_ms"], (name, m)
    for name in ("room", "fanout"):
        sse = results["sse"][name]
        assert sse["connected"] == sse["subscribers"] > 0
        assert sse["deliveries"] > 0
        assert sse["write_failures"] == 0, sse["write_failure_statuses"]
        latency = sse["latency"]
        assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert results["sse"]["fanout"]["per_connection_kib"] is not None
    assert 0 <= results["cache"]["hit_ratio"] <= 1
    assert {t["target"] for t in results["targets"]}
    assert results["ratios"]["read_cache_hit/ceiling_fastapi"][LEVEL] > 0
    assert "cleaned up: 2 databases dropped" in done.stdout
    assert bench_databases() <= before


def test_quick_scale_out_measures_one_and_two_instances_and_the_worker_delivers(
    tmp_path: Path,
) -> None:
    """The scale-out group: N ``serve`` behind nginx and one ``worker``, as operations.md says."""
    _, results = run_bench(tmp_path, "--only", "two_instances")
    for name in ("one", "two"):
        for kind in ("read", "patch"):
            m = results["scenarios"][f"instances_{name}_{kind}"][LEVEL]
            assert m["rps"] > 0, (name, kind)
        delivered = results["scale_out"][name]
        assert delivered["delivered_by_worker"] == delivered["submitted"] > 0, delivered
    assert results["sse"]["fanout_two_instances"]["deliveries"] > 0


def test_quick_layers_run_tabulates_server_cpu_per_layer_for_the_get_and_the_patch(
    tmp_path: Path,
) -> None:
    """``--layers``: py-spy's samples of the cached GET and the PATCH, charged to layers that
    add up to the measured CPU per response, printed as a table (bench/layers.py)."""
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        pytest.skip("py-spy comes with the dev extras")
    done, results = run_bench(tmp_path, "--only", "read_cache_hit,patch", "--layers")

    for scenario, own_layer in (("read_cache_hit", "rate limit"), ("patch", "answers statements")):
        attributed = results["layers"][scenario]
        assert attributed["clients"] == int(LEVEL)
        assert sum(attributed["layers"].values()) == attributed["samples"] > 0
        assert any(name.startswith(own_layer) for name in attributed["layers"]), attributed
    table = done.stdout[done.stdout.index("server CPU per layer") :]
    for layer in ("middleware", "audit", "access check"):
        assert layer in table, table
    total = next(line for line in table.splitlines() if line.startswith("total"))
    for scenario in ("read_cache_hit", "patch"):
        cpu = results["scenarios"][scenario][LEVEL]["server_cpu_ms_per_request"]
        assert f"{cpu:.3f}" in total.split(), (total, cpu)

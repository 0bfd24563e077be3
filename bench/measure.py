"""One measurement (a scenario at one concurrency), from wrk or from a Python load process.

Throughput counts successful responses only (2xx and 3xx): a refused write is not work done.
Latencies are of every completed response, in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua"


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def from_samples(
    latencies_s: list[float],
    *,
    seconds: float,
    clients: int,
    errors: int = 0,
    failed: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A measurement from per-operation latencies (seconds) taken by a Python load process."""
    values = sorted(latencies_s)
    ok = len(values) - failed
    return {
        "clients": clients,
        "seconds": round(seconds, 3),
        "requests": len(values),
        "ok": ok,
        "rps": round(ok / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p95_ms": round(percentile(values, 95) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3) if values else 0.0,
        "mean_ms": round(sum(values) / len(values) * 1000, 3) if values else 0.0,
        "errors": errors,
        "statuses": {},
        **(extra or {}),
    }


def from_wrk(raw: dict[str, Any], *, clients: int) -> dict[str, Any]:
    seconds = raw["duration_us"] / 1e6
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    ok = sum(n for code, n in statuses.items() if 200 <= int(code) < 400)
    errors = raw["errors"]
    latency = raw["latency_us"]
    return {
        "clients": clients,
        "seconds": round(seconds, 3),
        "requests": raw["requests"],
        "ok": ok,
        "rps": round(ok / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": latency["p50"] / 1000,
        "p95_ms": latency["p95"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000,
        "mean_ms": round(latency["mean"] / 1000, 3),
        "errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "statuses": statuses,
        "threads": raw["threads"],
    }


def run_wrk(
    script: str,
    base_url: str,
    *,
    clients: int,
    seconds: int,
    args: Sequence[str],
    one_thread_per_client: bool = False,
    cpu: Sequence[str] = (),
    work_dir: Path,
) -> dict[str, Any]:
    """Run ``wrk`` with ``lua/common.lua`` + ``lua/<script>.lua``; returns a measurement.

    ``one_thread_per_client``: wrk runs one connection per thread, so a script can keep state
    per client (its kit, the version it last saw). Otherwise one thread drives every connection.
    """
    source = (LUA / "common.lua").read_text() + "\n" + (LUA / f"{script}.lua").read_text()
    with tempfile.NamedTemporaryFile(
        "w", suffix=".lua", dir=work_dir, delete=False, encoding="utf-8"
    ) as handle:
        handle.write(source)
        path = handle.name
    threads = clients if one_thread_per_client else 1
    argv = [
        *cpu,
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        path,
        base_url,
        "--",
        *args,
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    finally:
        os.unlink(path)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("BENCH_JSON "):
            return from_wrk(json.loads(line.removeprefix("BENCH_JSON ")), clients=clients)
    raise RuntimeError(
        f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )

"""Ratios, targets and the printed table; helpers for profiles, redis-benchmark and nginx.

python -m bench.report bench/results/<run>.json [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench import layers

# scenario -> (ceiling scenario, what the ratio means)
CEILINGS = {
    "read_cache_hit": "ceiling_fastapi",
    "read_cache_off": "ceiling_fastapi",
    "read_no_ratelimit": "ceiling_fastapi",
    "read_no_audit": "ceiling_fastapi",
    "read_audit_sync": "ceiling_fastapi",
    "redis_down_read": "ceiling_fastapi",
    "ceiling_fastapi": "ceiling_asgi",
    "patch": "ceiling_sql_min",
    "patch_same_kit": "ceiling_sql_min",
    "create": "ceiling_sql_min",
    "submit": "ceiling_sql_min",
    "redis_down_patch": "ceiling_sql_min",
    "ceiling_sql_full": "ceiling_sql_min",
    "ceiling_redis_py": "ceiling_redis_benchmark",
    "ceiling_sql_min_ping": "ceiling_sql_min",
    "ceiling_fastapi_sync_deps": "ceiling_fastapi_async_deps",
}
ORDER = [
    "read_cache_hit",
    "read_no_audit",
    "read_audit_sync",
    "read_no_ratelimit",
    "read_cache_off",
    "redis_down_read",
    "read_heavy_mix",
    "patch",
    "patch_same_kit",
    "create",
    "submit",
    "redis_down_patch",
    "instances_one_read",
    "instances_two_read",
    "instances_one_patch",
    "instances_two_patch",
    "workers_one_read",
    "workers_two_read",
    "workers_one_patch",
    "workers_two_patch",
    "ceiling_asgi",
    "ceiling_fastapi",
    "ceiling_redis_benchmark",
    "ceiling_redis_py",
    "ceiling_sql_min",
    "ceiling_sql_min_ping",
    "ceiling_sql_full",
    "ceiling_fastapi_async_deps",
    "ceiling_fastapi_sync_deps",
]


def _get(results: dict[str, Any], scenario: str, clients: int | str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results["scenarios"].get(scenario, {}).get(str(clients))
    return found


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def add_derived(results: dict[str, Any]) -> None:
    """Ratios to the ceilings and the targets, computed from the measurements only."""
    scenarios = results["scenarios"]
    ratios: dict[str, dict[str, float | None]] = {}
    for scenario, ceiling in CEILINGS.items():
        for clients, m in scenarios.get(scenario, {}).items():
            top = _get(results, ceiling, clients)
            if top is not None:
                key = f"{scenario}/{ceiling}"
                ratios.setdefault(key, {})[clients] = _ratio(m["rps"], top["rps"])
    for clients, m in scenarios.get("read_cache_hit", {}).items():
        for other, key in (
            ("read_no_ratelimit", "rate_limit_throughput_cost"),
            ("read_no_audit", "read_audit_throughput_cost"),
        ):
            base = _get(results, other, clients)
            if base is not None and base["rps"]:
                ratios.setdefault(key, {})[clients] = round(1 - m["rps"] / base["rps"], 3)
        redis = _get(results, "ceiling_redis_py", clients)
        if redis is not None:
            ratios.setdefault("read_cache_hit/ceiling_redis_py", {})[clients] = _ratio(
                m["rps"], redis["rps"]
            )
    for down, healthy in (("redis_down_read", "read_cache_hit"), ("redis_down_patch", "patch")):
        for clients, m in scenarios.get(down, {}).items():
            base = _get(results, healthy, clients)
            if base is not None:
                ratios.setdefault(f"{down}_p95/{healthy}_p95", {})[clients] = _ratio(
                    m["p95_ms"], base["p95_ms"]
                )
    for group, label in (("instances", "two_instances"), ("workers", "two_workers")):
        for kind in ("read", "patch"):
            one = next(iter(scenarios.get(f"{group}_one_{kind}", {}).items()), None)
            two = next(iter(scenarios.get(f"{group}_two_{kind}", {}).items()), None)
            if one and two:
                ratios.setdefault(f"{label}/one_{kind}", {})[one[0]] = _ratio(
                    two[1]["rps"], one[1]["rps"]
                )
    results["ratios"] = ratios
    results["targets"] = targets(results)


def _all_succeeded(results: dict[str, Any], scenario: str) -> bool | None:
    runs = results["scenarios"].get(scenario)
    if not runs:
        return None
    return all(
        m["requests"] > 0 and m["errors"] == 0 and m["ok"] == m["requests"] for m in runs.values()
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, limit: float, *, at_most: bool, unit: str) -> None:
        met = None if measured is None else (measured <= limit if at_most else measured >= limit)
        relation = "≤" if at_most else "≥"
        out.append(
            {
                "target": f"{name} {relation} {limit:g}{unit}",
                "measured": measured,
                "met": met,
            }
        )

    read1 = _get(results, "read_cache_hit", 1)
    add("reads p95 at 1 client (ms)", read1 and read1["p95_ms"], 2, at_most=True, unit=" ms")
    ratios = results.get("ratios", {})
    r16 = ratios.get("read_cache_hit/ceiling_fastapi", {}).get("16")
    add(
        "reads at 16 clients, share of the minimal FastAPI endpoint",
        r16,
        0.5,
        at_most=False,
        unit="",
    )
    write1 = _get(results, "patch", 1)
    add("writes p95 at 1 client (ms)", write1 and write1["p95_ms"], 5, at_most=True, unit=" ms")
    w16 = ratios.get("patch/ceiling_sql_min", {}).get("16")
    add("writes at 16 clients, share of the direct SQL ceiling", w16, 0.3, at_most=False, unit="")
    room = results.get("sse", {}).get("room")
    add(
        "SSE write-to-event p95, 12 users on one kit (ms)",
        room and room["latency"]["p95_ms"],
        20,
        at_most=True,
        unit=" ms",
    )
    fanout = results.get("sse", {}).get("fanout")
    add(
        "SSE write-to-event p95, 1,000 subscribers on one instance (ms)",
        fanout and fanout["latency"]["p95_ms"],
        100,
        at_most=True,
        unit=" ms",
    )
    idle = results.get("sse", {}).get("idle")
    if idle:
        add(
            "SSE: idle streams held open on one process",
            idle["connected"],
            10_000,
            at_most=False,
            unit="",
        )
        add(
            f"SSE: {idle['connected']:,} idle streams on one process, server RSS (MiB)",
            round(idle["rss_after_kib"] / 1024, 1),
            1024,
            at_most=True,
            unit=" MiB",
        )
        add(
            f"SSE: events lost with {idle['connected']:,} streams open",
            idle["deliveries_expected"] - idle["deliveries"],
            0,
            at_most=True,
            unit="",
        )
    add(
        "cache hit ratio on a read-heavy mix",
        results.get("cache", {}).get("hit_ratio"),
        0.99,
        at_most=False,
        unit="",
    )
    succeeded = [_all_succeeded(results, s) for s in ("redis_down_read", "redis_down_patch")]
    out.append(
        {
            "target": "Redis down: every request succeeds",
            "measured": None if None in succeeded else all(succeeded),
            "met": None if None in succeeded else all(succeeded),
        }
    )
    worst = [
        v
        for key in ("redis_down_read_p95/read_cache_hit_p95", "redis_down_patch_p95/patch_p95")
        for v in ratios.get(key, {}).values()
        if v is not None
    ]
    add(
        "Redis down: worst p95 / healthy p95",
        max(worst) if worst else None,
        2,
        at_most=True,
        unit="×",
    )
    out.extend(issue_16_targets(results))
    return out


def _cpu(results: dict[str, Any], scenario: str, clients: int) -> float | None:
    m = _get(results, scenario, clients)
    return m.get("server_cpu_ms_per_request") if m else None


def issue_16_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue #16 (single worker unless said), beside #8's above."""
    ratios = results.get("ratios", {})
    read1, patch1 = _get(results, "read_cache_hit", 1), _get(results, "patch", 1)
    two_workers = next(iter(ratios.get("two_workers/one_read", {}).values()), None)
    rows: list[tuple[str, float | None, float, bool, str]] = [
        (
            "server CPU per cached, audited GET, 1 client",
            _cpu(results, "read_cache_hit", 1),
            0.5,
            True,
            " ms",
        ),
        (
            "reads at 16 clients ÷ the minimal FastAPI endpoint",
            ratios.get("read_cache_hit/ceiling_fastapi", {}).get("16"),
            0.20,
            False,
            "",
        ),
        ("read p95 at 1 client", read1 and read1["p95_ms"], 1.5, True, " ms"),
        ("server CPU per PATCH, 1 client", _cpu(results, "patch", 1), 2.0, True, " ms"),
        ("PATCH p95 at 1 client, durable commit", patch1 and patch1["p95_ms"], 5, True, " ms"),
        (
            "PATCH at 16 clients ÷ the direct SQL ceiling (sql_min)",
            ratios.get("patch/ceiling_sql_min", {}).get("16"),
            0.25,
            False,
            "",
        ),
        ("reads with --workers 2 ÷ 1 worker, most clients", two_workers, 1.5, False, "×"),
    ]
    out = []
    for name, measured, limit, at_most, unit in rows:
        met = None if measured is None else (measured <= limit if at_most else measured >= limit)
        relation = "≤" if at_most else "≥"
        out.append(
            {"target": f"#16: {name} {relation} {limit:g}{unit}", "measured": measured, "met": met}
        )
    return out


def table(results: dict[str, Any], *, markdown: bool = False) -> str:
    """One table: every scenario and concurrency, with its ratio to its ceiling."""
    header = [
        "scenario",
        "clients",
        "ok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "vs ceiling",
        "ratio",
        "server CPU ms/req",
    ]
    rows: list[list[str]] = []
    scenarios = results["scenarios"]
    ratios = results.get("ratios", {})
    names = [s for s in ORDER if s in scenarios] + [s for s in scenarios if s not in ORDER]
    for scenario in names:
        for clients, m in sorted(scenarios[scenario].items(), key=lambda kv: int(kv[0])):
            ceiling = CEILINGS.get(scenario, "")
            ratio = ratios.get(f"{scenario}/{ceiling}", {}).get(clients) if ceiling else None
            note = ""
            if m.get("conflicts"):
                note = f" ({m['conflicts']} × 409)"
            rows.append(
                [
                    scenario + note,
                    clients,
                    f"{m['rps']:.0f}",
                    f"{m['p50_ms']:.2f}",
                    f"{m['p95_ms']:.2f}",
                    f"{m['p99_ms']:.2f}",
                    ceiling.removeprefix("ceiling_"),
                    "" if ratio is None else f"{ratio:.2f}",
                    str(m.get("server_cpu_ms_per_request", "")),
                ]
            )
    lines = _render(header, rows, markdown)
    layer_header, layer_rows = layers.table_rows(results)
    if layer_rows:
        lines += ["", "server CPU per layer (py-spy samples × CPU per response; bench/layers.py)"]
        lines += _render(layer_header, layer_rows, markdown)
    sse = results.get("sse", {})
    extra: list[str] = []
    for name, s in sse.items():
        lat = s["latency"]
        text = (
            f"SSE {name}: {s['subscribers']} subscribers on {s['kits']} kits, "
            f"{s['deliveries']}/{s['deliveries_expected']} events delivered, write-to-event "
            f"p50 {lat['p50_ms']:.2f} / p95 {lat['p95_ms']:.2f} / p99 {lat['p99_ms']:.2f} ms "
            f"(the PATCH itself: p50 {s['write_latency']['p50_ms']:.2f} ms)"
        )
        if "per_connection_kib" in s:
            text += f"; server memory per idle SSE connection {s['per_connection_kib']} KiB"
        extra.append(text)
    cache = results.get("cache", {})
    if cache:
        extra.append(
            f"cache hit ratio on the read-heavy mix: {cache.get('hit_ratio')} "
            f"({cache.get('hits'):.0f} of {cache.get('lookups'):.0f} lookups)"
        )
    for key in (
        "rate_limit_throughput_cost",
        "read_audit_throughput_cost",
        "read_cache_hit/ceiling_redis_py",
        "redis_down_read_p95/read_cache_hit_p95",
        "redis_down_patch_p95/patch_p95",
        "two_instances/one_read",
        "two_instances/one_patch",
        "two_workers/one_read",
        "two_workers/one_patch",
    ):
        if key in ratios:
            values = ", ".join(f"c={c}: {v}" for c, v in ratios[key].items())
            extra.append(f"{key}: {values}")
    for t in results.get("targets", []):
        mark = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[t["met"]]
        extra.append(f"target {t['target']}: measured {t['measured']} -> {mark}")
    for note in results.get("notes", []):
        extra.append(f"note: {note}")
    bullet = "* " if markdown else ""
    return "\n".join(lines + [""] + [bullet + e for e in extra])


def _render(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return out
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header)] + [fmt.format(*r) for r in rows]


IDLE_LEAVES = ("Condition.wait", "Event.wait", "Queue.get")


def summarise_profile(raw: str, top: int = 25) -> dict[str, Any]:
    """py-spy ``raw`` (collapsed stacks): the busiest frames by self and by total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if stack.rsplit(";", 1)[-1].startswith(IDLE_LEAVES):  # idle worker threads
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": f, "samples": n, "share": round(n / samples, 4)}
            for f, n in counter.most_common(top)
        ]

    return {"samples": samples, "self": share(own), "total": share(total)}


def parse_redis_benchmark(output: str, clients: int) -> dict[str, Any]:
    """redis-benchmark --csv: "test","rps","avg","min","p50","p95","p99","max" (ms)."""
    rows = list(csv.reader(io.StringIO(output.strip())))
    header, values = rows[0], rows[-1]
    data = dict(zip(header, values, strict=False))
    rps = float(data["rps"])
    return {
        "clients": clients,
        "seconds": None,
        "requests": None,
        "ok": None,
        "rps": rps,
        "p50_ms": float(data["p50_latency_ms"]),
        "p95_ms": float(data["p95_latency_ms"]),
        "p99_ms": float(data["p99_latency_ms"]),
        "max_ms": float(data["max_latency_ms"]),
        "mean_ms": float(data["avg_latency_ms"]),
        "errors": 0,
        "statuses": {},
    }


def nginx_conf(port: int, upstreams: list[str], work: Path) -> str:
    # max_fails=0: no passive health checks, every request goes to its turn's server.
    servers = "\n".join(f"    server {u.removeprefix('http://')} max_fails=0;" for u in upstreams)
    return f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  upstream healthinfo {{
{servers}
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://healthinfo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    print(table(results, markdown=args.markdown))


if __name__ == "__main__":
    main()

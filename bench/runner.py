"""The benchmark run: start everything, measure every scenario, clean up, write the results.

``python -m bench`` (or ``bench/run``) — see docs/performance.md. In short:

* a fresh PostgreSQL database (and one for the key store), a Redis key prefix of this run;
* ``healthinfo serve`` subprocesses in several configurations, pinned to CPU 0;
* ``wrk`` (C, Lua scripts in bench/lua) as the load generator, pinned to CPU 1; Python load
  processes (also on CPU 1) for the Redis and SQL ceilings and for SSE;
* ceilings measured in the same run: a minimal FastAPI app and a bare ASGI app served by
  uvicorn like the service, a Redis HMGET of the cached entry, the write transaction through
  asyncpg;
* everything is stopped, dropped and deleted in ``finally``, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import infra, layers, report
from bench.measure import run_wrk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
UNLIMITED = "100000000/minute"
OWNER = "bench-owner"
SECRET = "bench-" + uuid.uuid4().hex + uuid.uuid4().hex
# Every required question answered, so the kits can be submitted.
ANSWERS: dict[str, Any] = {
    "dateOfBirth": "1980-05-17",
    "sexAtBirth": "female",
    "heightCm": 170,
    "weightKg": 65.5,
    "smokingStatus": "never",
    "alcoholFrequency": "never",
    "takesMedication": False,
    "hasAllergies": False,
    "consentToResearch": True,
    "ethnicity": "white",
    "vaping": False,
}
# Numeric questions that accept every value sse_load.py writes (100 … 199).
ROOM_FIELDS = ["heightCm", "weightKg", "waistCm", "cigarettesPerDay", "drinksPerWeek"]


@dataclass
class Options:
    seconds: int = 10
    warmup: int = 2
    levels: tuple[int, ...] = (1, 16, 64)
    sse_seconds: float = 10.0
    fanout_kits: int = 100
    fanout_per_kit: int = 10
    room_users: int = 12
    idle_streams: int = 10_000  # the target: this many idle SSE streams on one process
    idle_streams_per_kit: int = 50  # the default room limit
    read_kits: int = 64
    only: set[str] | None = None
    out_dir: Path = RESULTS
    keep_logs: bool = False
    profile: bool = False
    layers: bool = False  # py-spy the cached GET and the PATCH: the per-layer CPU table
    two_instances: bool = True
    quick: bool = False
    wait_quiet: float | None = None
    wait_max_seconds: int = 900

    def wants(self, name: str) -> bool:
        return self.only is None or name in self.only

    @property
    def profiled_level(self) -> int:
        """The number of clients at which --profile and --layers sample the server."""
        return 16 if 16 in self.levels else max(self.levels)


def token(sub: str, roles: tuple[str, ...] = ()) -> str:
    from healthinfo.auth.tokens import mint_token

    return mint_token(SECRET.encode(), sub=sub, roles=list(roles), ttl_seconds=6 * 3600)


class Api:
    """A plain client for seeding and reading metrics (never used to generate load)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.owner = {"Authorization": f"Bearer {token(OWNER)}"}

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def submit(self, kit: str) -> None:
        r = self.http.post(f"/v1/kits/{kit}/health-information/submit", headers=self.owner)
        if r.status_code != 200:
            raise RuntimeError(f"submitting {kit}: {r.status_code} {r.text[:300]}")

    def save(self, kit: str, answers: dict[str, Any] | None = None) -> int:
        """PUT, retried on a 5xx (a shared PostgreSQL can run out of connections for a while)."""
        body = {"answers": answers or ANSWERS}
        for attempt in range(5):
            r = self.http.put(f"/v1/kits/{kit}/health-information", json=body, headers=self.owner)
            if r.status_code in (200, 201):
                return int(r.json()["version"])
            if r.status_code < 500:
                break
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"seeding {kit}: {r.status_code} {r.text[:500]}")

    def seed(self, kits: list[str]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.save, kits))

    def read_all(self, kits: list[str]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.read, kits))

    def read(self, kit: str) -> bytes:
        for attempt in range(5):
            r = self.http.get(f"/v1/kits/{kit}/health-information", headers=self.owner)
            if r.status_code < 500:
                break
            time.sleep(0.5 * (attempt + 1))
        r.raise_for_status()
        return r.content

    def add_editor(self, kit: str, user: str) -> None:
        r = self.http.put(
            f"/v1/kits/{kit}/members/{user}", json={"role": "editor"}, headers=self.owner
        )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"adding {user} to {kit}: {r.status_code} {r.text[:300]}")

    def cache_counts(self) -> tuple[float, float]:
        """(hits, misses) from /metrics: the ratio is theirs, over the run (no gauge of it)."""
        text = self.http.get("/metrics").text
        hits = _metric(text, r"healthinfo_cache_hits_total")
        misses = _metric(text, r"healthinfo_cache_misses_total")
        return hits or 0.0, misses or 0.0


def _metric(text: str, pattern: str, default: float | None = 0.0) -> float | None:
    match = re.search(rf"^{pattern} ([0-9.eE+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else default


@dataclass
class Bench:
    opts: Options
    work: Path
    db_url: str
    keystore_url: str
    prefix: str
    results: dict[str, Any] = field(default_factory=dict)
    processes: list[infra.Process] = field(default_factory=list)
    prestarted: dict[str, tuple[infra.Process, str]] = field(default_factory=dict)
    current: infra.Process | None = None  # the server wrk is pointed at, for its CPU time

    def __post_init__(self) -> None:
        self.server_cpu, self.load_cpu = infra.pinning()
        self.results = {"scenarios": {}, "sse": {}, "cache": {}, "profiles": {}, "notes": []}
        self.owner_token = token(OWNER)
        self.t0 = time.monotonic()

    # -- processes -------------------------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")}
        settings = {
            "HEALTHINFO_ENVIRONMENT": "test",
            "HEALTHINFO_DATABASE_URL": self.db_url,
            "HEALTHINFO_KEYSTORE_URL": self.keystore_url,
            "HEALTHINFO_DATA_DIR": str(self.work / "data"),
            "HEALTHINFO_JWT_SECRET": SECRET,
            "HEALTHINFO_MIGRATE_ON_START": "true",
            "HEALTHINFO_REDIS_URL": infra.REDIS_URL,
            "HEALTHINFO_REDIS_KEY_PREFIX": self.prefix,
            "HEALTHINFO_CACHE_WARM_HOURS": "0",
            "HEALTHINFO_WORKERS": "1",  # a scenario asks for more with overrides={"workers": …}
            # The redis-down scenario starts the service with Redis gone, as it must keep working.
            "HEALTHINFO_REDIS_REQUIRED_AT_START": "false",
            # One token stands in for many users here: the per-user room cap must not apply.
            "HEALTHINFO_ROOM_USER_LIMIT": "10000",
            "HEALTHINFO_RATE_LIMIT_FOCUS_PER_USER": UNLIMITED,
        }
        for kind in ("READ", "WRITE", "STREAM"):
            for who in ("USER", "ADDRESS"):
                settings[f"HEALTHINFO_RATE_LIMIT_{kind}_PER_{who}"] = UNLIMITED
        settings.update({f"HEALTHINFO_{k.upper()}": v for k, v in overrides.items()})
        return {**base, **settings}

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready: str,
        *,
        wait: bool = True,
        pinned: bool = True,
    ) -> infra.Process:
        port_flag = "--port" if "--port" in argv else "--metrics-port"
        port = int(argv[argv.index(port_flag) + 1])
        cpu = self.server_cpu if pinned else []
        proc = infra.Process(name, argv, env=env, log_dir=self.work, cpu=cpu)
        self.processes.append(proc)
        proc.start()
        if wait:
            proc.wait_http(f"http://127.0.0.1:{port}{ready}")
        return proc

    def serve(
        self, name: str, *, wait: bool = True, pinned: bool = True, **overrides: str
    ) -> tuple[infra.Process, str]:
        if name in self.prestarted:
            proc, url = self.prestarted.pop(name)
            proc.wait_http(f"{url}/health/ready")
            return proc, url
        port = infra.free_port()
        argv = [sys.executable, "-m", "healthinfo", "serve", "--port", str(port)]
        env = self.env(**overrides)
        proc = self.start(name, argv, env, "/health/ready", wait=wait, pinned=pinned)
        return proc, f"http://127.0.0.1:{port}"

    def prestart(self, configs: dict[str, dict[str, str]]) -> None:
        """Start servers now, in parallel, to be used later (quick runs: start-up is slow)."""
        for name, overrides in configs.items():
            self.prestarted[name] = self.serve(name, wait=False, **overrides)

    def stop(self, proc: infra.Process) -> None:
        proc.stop()
        with contextlib.suppress(ValueError):
            self.processes.remove(proc)

    @contextlib.contextmanager
    def server(self, name: str, **overrides: str) -> Iterator[tuple[infra.Process, str, Api]]:
        proc, url = self.serve(name, **overrides)
        api = Api(url)
        self.current = proc
        try:
            yield proc, url, api
        finally:
            self.current = None
            api.close()
            self.stop(proc)

    # -- measuring ---------------------------------------------------------------------------

    def wrk(self, script: str, url: str, clients: int, args: list[str], **kw: Any) -> Any:
        """A wrk run; adds the server's CPU time per response (robust to a busy machine)."""
        server = self.current
        cpu_before = server.cpu_seconds() if server is not None else 0.0
        m: dict[str, Any] = run_wrk(
            script,
            url,
            clients=clients,
            seconds=kw.pop("seconds", self.opts.seconds),
            args=args,
            cpu=kw.pop("cpu", self.load_cpu),
            work_dir=self.work,
            **kw,
        )
        if server is not None and m["requests"]:
            used = server.cpu_seconds() - cpu_before
            m["server_cpu_ms_per_request"] = round(used * 1000 / m["requests"], 3)
            m["server_cpu_share"] = round(used / m["seconds"], 3) if m["seconds"] else None
        return m

    def record(self, scenario: str, clients: int, measurement: dict[str, Any]) -> None:
        measurement["loadavg_1m"] = _loadavg()
        self.results["scenarios"].setdefault(scenario, {})[str(clients)] = measurement
        m = measurement
        print(
            f"  {scenario:<24} c={clients:<3} {m['rps']:>9.1f}/s  p50 {m['p50_ms']:7.2f}  "
            f"p95 {m['p95_ms']:7.2f}  p99 {m['p99_ms']:7.2f} ms  ok {m['ok']}/{m['requests']}"
            f"  err {m['errors']}  cpu/req {m.get('server_cpu_ms_per_request', '-')} ms"
            f"  load {m['loadavg_1m']}  t+{time.monotonic() - self.t0:.0f}s",
            flush=True,
        )

    def python_load(self, module: str, *args: str, seconds: float) -> dict[str, Any]:
        argv = [*self.load_cpu, sys.executable, "-m", module, *args]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        return infra.run_json(argv, timeout=seconds + 120, env=env)

    @contextlib.contextmanager
    def profiling(self, proc: infra.Process, scenario: str, clients: int) -> Iterator[None]:
        """py-spy on the server while the block runs, at ``Options.profiled_level`` clients:
        summarised (``--profile``) and attributed to layers (``--layers``, bench/layers.py)."""
        name = f"{scenario}-c{clients}"
        wanted = self.opts.profile or self.opts.layers
        spy = _py_spy() if wanted and clients == self.opts.profiled_level else None
        if spy is None:
            if self.opts.layers and clients == self.opts.profiled_level:
                self.results["notes"].append("--layers: py-spy not found, no per-layer table")
            yield
            return
        out = self.work / f"profile-{name}.txt"
        argv = [spy, "record", "--nonblocking", "-p", str(proc.pid), "-r", "200", "-f", "raw"]
        argv += ["-o", str(out)]
        argv += ["-d", str(self.opts.seconds)]
        recorder = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            yield
        finally:
            try:
                recorder.wait(timeout=self.opts.seconds + 30)
            except subprocess.TimeoutExpired:
                os.killpg(recorder.pid, signal.SIGKILL)
                recorder.wait()
        if out.exists() and self.opts.layers:
            attributed = layers.attribute(out.read_text())
            self.results.setdefault("layers", {})[scenario] = {"clients": clients, **attributed}
        if out.exists() and self.opts.profile:
            self.results["profiles"][name] = report.summarise_profile(out.read_text())
            kept = self.opts.out_dir / f"profile-{name}-{self.results['meta']['run_id']}.txt"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, kept)
            self.results["profiles"][name]["file"] = str(kept)

    # -- scenarios -----------------------------------------------------------------------------

    def run(self) -> None:
        o = self.opts
        levels = o.levels
        configs = {
            "no-cache": {"cache_enabled": "false"},
            "no-ratelimit": {"rate_limit_enabled": "false"},
            "no-read-audit": {"audit_reads": "off"},
            "sync-read-audit": {"audit_reads": "sync"},
            "redis-down": {"redis_url": f"redis://127.0.0.1:{infra.closed_port()}/0"},
        }
        wanted = {
            "no-cache": "read_cache_off",
            "no-ratelimit": "read_no_ratelimit",
            "no-read-audit": "read_no_audit",
            "sync-read-audit": "read_audit_sync",
            "redis-down": "redis_down",
        }
        with self.server("service") as (proc, url, api):
            if o.quick:  # the database is migrated now; measurements here are a smoke only
                self.prestart({n: c for n, c in configs.items() if o.wants(wanted[n])})
            read_kits = [f"R{i}" for i in range(1, o.read_kits + 1)]
            api.seed(read_kits)
            api.read_all(read_kits)  # fills the cache
            payload = self.work / "payload.json"
            payload.write_bytes(api.read("R1"))
            self.results["meta"]["payload_bytes"] = len(payload.read_bytes())
            if o.warmup:
                self.wrk(
                    "read",
                    url,
                    16,
                    [self.owner_token, "R", str(self.opts.read_kits)],
                    seconds=o.warmup,
                )
            if o.wants("read_cache_hit"):
                with self.guard("read_cache_hit"):
                    for c in levels:
                        with self.profiling(proc, "read_cache_hit", c):
                            m = self.wrk(
                                "read", url, c, [self.owner_token, "R", str(self.opts.read_kits)]
                            )
                        self.record("read_cache_hit", c, m)
            if o.wants("patch"):
                with self.guard("patch"):
                    for c in levels:
                        kit_prefix = f"P{c}-"
                        api.seed([f"{kit_prefix}{i}" for i in range(1, c + 1)])
                        args = [self.owner_token, kit_prefix, "own", "1"]
                        with self.profiling(proc, "patch", c):
                            m = self.wrk("patch", url, c, args, one_thread_per_client=True)
                        self.record("patch", c, m)
            if o.wants("patch_same_kit"):
                with self.guard("patch_same_kit"):
                    for c in levels:
                        kit = f"X{c}"
                        api.save(kit)
                        args = [self.owner_token, kit, "shared", "1"]
                        m = self.wrk("patch", url, c, args, one_thread_per_client=True)
                        m["conflicts"] = m["statuses"].get("409", 0)
                        self.record("patch_same_kit", c, m)
            if o.wants("submit"):
                with self.guard("submit"):
                    body = json.dumps({"answers": ANSWERS})
                    for c in levels:
                        kit_prefix = f"C{c}-"
                        args = [self.owner_token, kit_prefix, body]
                        seconds = o.seconds if o.quick else 2 * o.seconds
                        m = self.wrk(
                            "create", url, c, args, one_thread_per_client=True, seconds=seconds
                        )
                        self.record("create", c, m)
                        created = [int(t.get("created", 0)) for t in m["threads"]]
                        args = [self.owner_token, kit_prefix, ",".join(map(str, created))]
                        seconds = self.submit_seconds(c, min(created))
                        m = self.wrk(
                            "submit", url, c, args, one_thread_per_client=True, seconds=seconds
                        )
                        m["exhausted"] = any(t.get("exhausted") for t in m["threads"])
                        if m["exhausted"]:
                            self.results["notes"].append(
                                f"submit c={c}: a client ran out of fresh kits before the end "
                                f"of its {seconds} s: its throughput is a lower bound"
                            )
                        self.record("submit", c, m)
            if o.wants("cache_hit_ratio"):
                with self.guard("cache_hit_ratio"):
                    self.cache_hit_ratio(url, api)
            if o.wants("sse"):
                with self.guard("sse"):
                    self.sse(proc, url, api)
            if o.wants("sse_idle"):
                with self.guard("sse_idle"):
                    self.sse_idle(proc, url, api)
            if o.wants("ceilings"):
                with self.guard("ceilings"):
                    self.sql_ceiling(api)
                    self.redis_ceiling()
        if o.wants("ceilings"):
            with self.guard("ceilings"):
                self.framework_ceilings(self.work / "payload.json")
        if o.wants("read_cache_off"):
            with (
                self.guard("read_cache_off"),
                self.server("no-cache", **configs["no-cache"]) as (_, url, api),
            ):
                api.read("R1")
                self.reads("read_cache_off", url)
        if o.wants("read_no_ratelimit"):
            with (
                self.guard("read_no_ratelimit"),
                self.server("no-ratelimit", **configs["no-ratelimit"]) as (_, url, api),
            ):
                api.read("R1")
                self.reads("read_no_ratelimit", url)
        if o.wants("read_no_audit"):
            with (
                self.guard("read_no_audit"),
                self.server("no-read-audit", **configs["no-read-audit"]) as (_, url, api),
            ):
                api.read_all([f"R{i}" for i in range(1, o.read_kits + 1)])
                self.reads("read_no_audit", url)
        if o.wants("read_audit_sync"):
            with (
                self.guard("read_audit_sync"),
                self.server("sync-read-audit", **configs["sync-read-audit"]) as (_, url, api),
            ):
                api.read_all([f"R{i}" for i in range(1, o.read_kits + 1)])
                self.reads("read_audit_sync", url)
        if o.wants("redis_down"):
            with self.guard("redis_down"):
                self.redis_down(configs["redis-down"])
        if o.wants("two_instances") and o.two_instances:
            with self.guard("two_instances"):
                self.two_instances()
        if o.wants("workers") and (not o.quick or o.only is not None):
            with self.guard("workers"):
                self.workers()

    @contextlib.contextmanager
    def guard(self, scenario: str) -> Iterator[None]:
        """A failing scenario group is noted and the run goes on (a shared machine misbehaves)."""
        try:
            yield
        except Exception as exc:
            text = str(exc)
            text = text if len(text) <= 600 else text[:200] + " … " + text[-400:]
            note = f"{scenario} failed: {type(exc).__name__}: {text}"
            print(f"  !! {note}", flush=True)
            self.results["notes"].append(note)

    def submit_seconds(self, clients: int, kits_per_client: int) -> int:
        """A run short enough for the kits created: a submit costs about what a PATCH costs."""
        patch = self.results["scenarios"].get("patch", {}).get(str(clients))
        per_client = (patch["rps"] / clients) if patch and patch["rps"] else 0.0
        if per_client <= 0:
            return self.opts.seconds
        return max(1, min(self.opts.seconds, int(kits_per_client / (1.5 * per_client))))

    def reads(self, scenario: str, url: str) -> None:
        for c in self.opts.levels:
            m = self.wrk("read", url, c, [self.owner_token, "R", str(self.opts.read_kits)])
            self.record(scenario, c, m)

    def cache_hit_ratio(self, url: str, api: Api) -> None:
        kits = [f"M{i}" for i in range(1, self.opts.read_kits + 1)]
        clients = min(16, max(self.opts.levels))
        api.seed(kits)
        hits0, misses0 = api.cache_counts()
        m = self.wrk(
            "mix", url, clients, [self.owner_token, "M", str(len(kits))], one_thread_per_client=True
        )
        hits1, misses1 = api.cache_counts()
        self.record("read_heavy_mix", clients, m)
        lookups = (hits1 - hits0) + (misses1 - misses0)
        self.results["cache"] = {
            "mix": f"95 % GET over {len(kits)} kits, 5 % PATCH ({clients} clients)",
            "lookups": lookups,
            "hits": hits1 - hits0,
            "hit_ratio": round((hits1 - hits0) / lookups, 5) if lookups else None,
        }
        print(f"  cache hit ratio (mix): {self.results['cache']['hit_ratio']}", flush=True)

    def sse(self, proc: infra.Process, url: str, api: Api) -> None:
        o = self.opts
        port = url.rsplit(":", 1)[1]
        # Room: owner + editors on one kit, each subscribed, writing in turn.
        users = [OWNER] + [f"bench-editor-{i}" for i in range(1, o.room_users)]
        api.save("SR")
        for user in users[1:]:
            api.add_editor("SR", user)
        tokens = {u: token(u) for u in users}
        room = {
            "subscribers": [{"kit": "SR", "token": tokens[u]} for u in users],
            "writers": [
                {"kit": "SR", "token": tokens[u], "field": ROOM_FIELDS[i % len(ROOM_FIELDS)]}
                for i, u in enumerate(users)
            ],
            "interval": 0.05,
            "seconds": o.sse_seconds,
            "idle": 0.5 if o.quick else 2.0,
        }
        self.results["sse"]["room"] = self.sse_load("room", room, proc, port)
        # Fan-out: many kits, several subscribers each; memory per idle connection.
        kits = [f"SF{i}" for i in range(1, o.fanout_kits + 1)]
        api.seed(kits)
        warm = {
            "subscribers": [{"kit": kits[0], "token": self.owner_token}] * 5,
            "writers": [{"kit": kits[0], "token": self.owner_token, "field": "heightCm"}],
            "interval": 0.1,
            "seconds": 0.5,
        }
        if not o.quick:
            self.sse_load("warm-up", warm, proc, port)
        fanout = {**self.fanout_plan(kits), "measure_memory": True}
        self.results["sse"]["fanout"] = self.sse_load("fanout", fanout, proc, port)

    def fanout_plan(self, kits: list[str]) -> dict[str, Any]:
        """Several subscribers per kit, one writer per kit, 50 writes/s spread over them."""
        o = self.opts
        return {
            "subscribers": [
                {"kit": k, "token": self.owner_token} for k in kits for _ in range(o.fanout_per_kit)
            ],
            "writers": [{"kit": k, "token": self.owner_token, "field": "heightCm"} for k in kits],
            "interval": 0.02,
            "seconds": o.sse_seconds,
            "idle": 0.5 if o.quick else 3.0,
        }

    def sse_idle(self, proc: infra.Process, url: str, api: Api) -> None:
        """The scale target itself, not an extrapolation: N idle streams on one process.

        Full rooms (the default room limit) over N / limit kits; after they settle, one write
        per kit proves every stream is still live (each event must reach all its room).
        """
        o = self.opts
        port = url.rsplit(":", 1)[1]
        per_kit = o.idle_streams_per_kit
        kits = [f"SI{i}" for i in range(1, -(-o.idle_streams // per_kit) + 1)]
        api.seed(kits)
        plan = {
            "subscribers": [
                {"kit": k, "token": self.owner_token} for k in kits for _ in range(per_kit)
            ][: o.idle_streams],
            "writers": [{"kit": k, "token": self.owner_token, "field": "heightCm"} for k in kits],
            "interval": 0.02,
            "seconds": max(1.0, len(kits) * 0.03),  # about one write per kit
            "idle": 1.0 if o.quick else 10.0,
            "measure_memory": True,
        }
        result = self.sse_load("idle", plan, proc, port)
        self.results["sse"]["idle"] = result

    def sse_load(
        self, name: str, plan: dict[str, Any], proc: infra.Process | None, port: str
    ) -> dict[str, Any]:
        path = self.work / f"sse-{name}.json"
        path.write_text(json.dumps(plan))
        pid = ["--server-pid", str(proc.pid)] if proc is not None else []
        result = self.python_load(
            "bench.sse_load",
            "--port",
            port,
            "--plan",
            str(path),
            *pid,
            seconds=float(plan["seconds"]) + 60,
        )
        lat = result["latency"]
        print(
            f"  sse {name:<8} {result['subscribers']} subscribers / {result['kits']} kits: "
            f"{result['deliveries']}/{result['deliveries_expected']} events, write-to-event "
            f"p50 {lat['p50_ms']:.2f} p95 {lat['p95_ms']:.2f} p99 {lat['p99_ms']:.2f} ms"
            + (
                f", {result['per_connection_kib']} KiB/connection"
                if "per_connection_kib" in result
                else ""
            ),
            flush=True,
        )
        return result

    def sql_ceiling(self, api: Api) -> None:
        dsn = infra.plain_dsn(self.db_url)
        for variant in ("min", "min_ping", "full"):
            for c in self.opts.levels:
                kit_prefix = f"Q{variant}{c}-"
                api.seed([f"{kit_prefix}{i}" for i in range(1, c + 1)])
                m = self.python_load(
                    "bench.sql_load",
                    "--dsn",
                    dsn,
                    "--prefix",
                    kit_prefix,
                    "--user",
                    OWNER,
                    "--clients",
                    str(c),
                    "--seconds",
                    str(self.opts.seconds),
                    "--variant",
                    variant,
                    seconds=self.opts.seconds,
                )
                self.record(f"ceiling_sql_{variant}", c, m)

    def redis_ceiling(self) -> None:
        key = f"{self.prefix}hi:v1:R1"
        for c in self.opts.levels:
            m = self.python_load(
                "bench.redis_load",
                "--url",
                infra.REDIS_URL,
                "--key",
                key,
                "--clients",
                str(c),
                "--seconds",
                str(self.opts.seconds),
                seconds=self.opts.seconds,
            )
            self.record("ceiling_redis_py", c, m)
        if shutil.which("redis-benchmark") is None:
            self.results["notes"].append("redis-benchmark not installed: C-client ceiling skipped")
            return
        host, port = _redis_host_port()
        for c in self.opts.levels:
            argv = [*self.load_cpu, "redis-benchmark", "-h", host, "-p", str(port)]
            count = 2000 if self.opts.quick else 20000 * self.opts.seconds
            argv += ["-c", str(c), "-n", str(count), "--csv"]
            argv += ["HMGET", key, "v", "d"]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
            self.record("ceiling_redis_benchmark", c, report.parse_redis_benchmark(out.stdout, c))

    def framework_ceilings(self, payload: Path) -> None:
        for kind in ("fastapi", "asgi", "fastapi_sync_deps", "fastapi_async_deps"):
            port = infra.free_port()
            argv = [sys.executable, "-m", "bench.ceiling_apps", kind, "--port", str(port)]
            argv += ["--payload", str(payload)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            ready = "/" if kind == "asgi" else "/health/ready"
            proc = self.start(f"ceiling-{kind}", argv, env, ready)
            self.current = proc
            try:
                url = f"http://127.0.0.1:{port}"
                if self.opts.warmup:
                    self.wrk(
                        "read",
                        url,
                        16,
                        ["t", "R", str(self.opts.read_kits)],
                        seconds=self.opts.warmup,
                    )
                for c in self.opts.levels:
                    m = self.wrk("read", url, c, ["t", "R", str(self.opts.read_kits)])
                    self.record(f"ceiling_{kind}", c, m)
            finally:
                self.current = None
                self.stop(proc)

    def redis_down(self, overrides: dict[str, str]) -> None:
        with self.server("redis-down", **overrides) as (_, url, api):
            api.read("R1")
            for c in self.opts.levels:
                m = self.wrk("read", url, c, [self.owner_token, "R", str(self.opts.read_kits)])
                self.record("redis_down_read", c, m)
            for c in self.opts.levels:
                kit_prefix = f"D{c}-"
                api.seed([f"{kit_prefix}{i}" for i in range(1, c + 1)])
                args = [self.owner_token, kit_prefix, "own", "1"]
                m = self.wrk("patch", url, c, args, one_thread_per_client=True)
                self.record("redis_down_patch", c, m)

    def two_instances(self) -> None:
        """Scale-out: the deployment of docs/operations.md with one ``serve`` and with two.

        ``serve`` processes behind nginx (round robin, keep-alive), forwarding by one
        ``healthinfo worker`` (``HEALTHINFO_FORWARD_IN_PROCESS=false``) to a stand-in lab, on
        one PostgreSQL and Redis. Reads and PATCH writes at the highest level of clients go
        through nginx in both configurations, then a batch of submissions whose delivery by
        the worker is timed. Unlike every other scenario nothing is pinned: one Python process
        can use one core, and the question is what a second process gains from a second core.
        wrk, nginx, the worker, PostgreSQL and Redis share the same two cores, so the gain
        measured here is a lower bound of what a machine with a core per process shows.
        """
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            self.results["notes"].append("nginx not installed: two-instance scenario skipped")
            return
        lab = self.lab_stand_in()
        # A smaller pool per process (10 connections + 10 for the key store): two instances must
        # fit in a shared PostgreSQL's max_connections. "one" runs with the same settings.
        deployment = {
            "db_pool_size": "10",
            "db_max_overflow": "0",
            "forward_url": f"{lab}/intake",
            "forward_secret": SECRET,
            "forward_in_process": "false",
        }
        worker_port = infra.free_port()
        worker = self.start(
            "worker",
            [sys.executable, "-m", "healthinfo", "worker", "--metrics-port", str(worker_port)],
            self.env(**deployment),
            "/metrics",
            pinned=False,
        )
        worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
        try:
            with (
                self.server("instance-a", pinned=False, **deployment) as (_, url_a, api),
                self.server("instance-b", pinned=False, **deployment) as (_, url_b, _),
            ):
                self.current = None  # several servers: no single process to account CPU to
                for name, upstreams in (("one", [url_a]), ("two", [url_a, url_b])):
                    with self.balancer(nginx, upstreams) as lb_url:
                        self.scale_out_load(name, lb_url, api)
                        self.scale_out_deliveries(name, lb_url, worker_metrics)
                self.sse_two_instances(api, url_a, url_b)
        finally:
            self.stop(worker)

    def workers(self) -> None:
        """``serve --workers N`` (issue #16.5): reads and PATCH writes at the highest level of
        clients against one server with one worker process, then with two.

        Unpinned, like ``two_instances``: the question is what a second worker gains from the
        machine's second core. wrk, PostgreSQL and Redis share the same two cores, so the gain
        is a lower bound. The server's CPU per request sums the supervisor and its workers.
        """
        c = max(self.opts.levels)
        reads = [self.owner_token, "R", str(self.opts.read_kits)]
        kits = [f"R{i}" for i in range(1, self.opts.read_kits + 1)]
        # Two processes' pools must fit in a shared PostgreSQL's max_connections.
        deployment = {"db_pool_size": "10", "db_max_overflow": "0"}
        for name, count in (("one", "1"), ("two", "2")):
            with self.server(f"workers-{count}", pinned=False, workers=count, **deployment) as (
                _,
                url,
                api,
            ):
                api.read_all(kits)
                # Each worker fills its own in-process cache before the measurement.
                self.wrk("read", url, 16, reads, seconds=max(self.opts.warmup, 1), cpu=[])
                self.record(f"workers_{name}_read", c, self.wrk("read", url, c, reads, cpu=[]))
                kit_prefix = f"W{count}-{c}-"
                api.seed([f"{kit_prefix}{i}" for i in range(1, c + 1)])
                args = [self.owner_token, kit_prefix, "own", "1"]
                m = self.wrk("patch", url, c, args, one_thread_per_client=True, cpu=[])
                self.record(f"workers_{name}_patch", c, m)

    def lab_stand_in(self) -> str:
        """The lab's API for the worker to deliver to: the bare ASGI app, 200 to anything."""
        port = infra.free_port()
        argv = [sys.executable, "-m", "bench.ceiling_apps", "asgi", "--port", str(port)]
        argv += ["--payload", str(self.work / "payload.json")]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.start("lab", argv, env, "/", pinned=False)
        return f"http://127.0.0.1:{port}"

    @contextlib.contextmanager
    def balancer(self, nginx: str, upstreams: list[str]) -> Iterator[str]:
        port = infra.free_port()
        conf = self.work / f"nginx-{len(upstreams)}.conf"
        conf.write_text(report.nginx_conf(port, upstreams, self.work))
        lb = infra.Process(
            "nginx",
            [nginx, "-c", str(conf), "-g", "daemon off;"],
            env=dict(os.environ),
            log_dir=self.work,
        )
        self.processes.append(lb)
        lb.start()
        try:
            lb.wait_http(f"http://127.0.0.1:{port}/health/live")
            yield f"http://127.0.0.1:{port}"
        finally:
            self.stop(lb)

    def scale_out_load(self, name: str, url: str, api: Api) -> None:
        c = max(self.opts.levels)
        reads = [self.owner_token, "R", str(self.opts.read_kits)]
        m = self.wrk("read", url, c, reads, cpu=[])
        self.record(f"instances_{name}_read", c, m)
        kit_prefix = f"I{name}{c}-"
        api.seed([f"{kit_prefix}{i}" for i in range(1, c + 1)])
        args = [self.owner_token, kit_prefix, "own", "1"]
        m = self.wrk("patch", url, c, args, one_thread_per_client=True, cpu=[])
        self.record(f"instances_{name}_patch", c, m)

    def scale_out_deliveries(self, name: str, url: str, worker_metrics: str) -> None:
        """Submit a batch through the balancer; time until the worker has delivered all."""
        count = 20 if not self.opts.quick else 4
        kits = [f"F{name}-{i}" for i in range(count)]
        before = self.delivered(worker_metrics)
        with Api(url) as api:
            api.seed(kits)
            began = time.monotonic()
            for kit in kits:
                api.submit(kit)
        deadline = began + 60
        delivered = 0.0
        while time.monotonic() < deadline:
            delivered = self.delivered(worker_metrics) - before
            if delivered >= count:
                break
            time.sleep(0.1)
        self.results.setdefault("scale_out", {})[name] = {
            "submitted": count,
            "delivered_by_worker": int(delivered),
            "seconds_to_deliver_all": round(time.monotonic() - began, 2),
        }

    @staticmethod
    def delivered(metrics_url: str) -> float:
        text = httpx.get(metrics_url, timeout=10).text
        return (
            _metric(text, r'healthinfo_forwarding_deliveries_total\{outcome="delivered"\}') or 0.0
        )

    def sse_two_instances(self, api: Api, url_a: str, url_b: str) -> None:
        """The fan-out of ``sse`` with its subscribers split over two instances: writes go to
        one, so half the deliveries cross instances through Redis pub/sub."""
        kits = [f"SX{i}" for i in range(1, self.opts.fanout_kits + 1)]
        api.seed(kits)
        port_a, port_b = (u.rsplit(":", 1)[1] for u in (url_a, url_b))
        plan = {**self.fanout_plan(kits), "ports": [port_a, port_b]}
        result = self.sse_load("fanout_two_instances", plan, None, port_a)
        self.results["sse"]["fanout_two_instances"] = result


def _loadavg() -> float:
    """The machine's 1-minute load average: other work on the machine skews every figure."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


def _redis_host_port() -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(infra.REDIS_URL)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def ensure_wrk() -> None:
    """wrk is the load generator: install Debian's package when it is missing (as root)."""
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("== installing wrk (apt-get install -y wrk)", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def execute(opts: Options) -> tuple[dict[str, Any], Path]:
    """Run the bench; returns (results, path of the JSON written)."""
    ensure_wrk()
    waited = wait_for_quiet(opts)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="healthinfo-bench-"))
    (work / "data").mkdir()
    prefix = f"healthinfo-bench-{uuid.uuid4().hex[:8]}:"
    databases: list[str] = []
    bench: Bench | None = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    try:
        name, url = asyncio.run(infra.create_database())
        databases.append(name)
        keystore_name, keystore_url = asyncio.run(infra.create_database())
        databases.append(keystore_name)
        bench = Bench(opts, work, url, keystore_url, prefix)
        bench.results["meta"] = {
            "run_id": run_id,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": git_revision(),
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "python": platform.python_version(),
            "pinning": {"server": bench.server_cpu, "load": bench.load_cpu},
            "seconds": opts.seconds,
            "levels": list(opts.levels),
            "loadavg_1m_at_start": _loadavg(),
            "waited_for_quiet_seconds": waited,
            "quick": opts.quick,
            "load_generator": "wrk 4 (Lua scripts in bench/lua) for HTTP; Python asyncio "
            "processes for the Redis and SQL ceilings and for SSE",
        }
        print(f"== bench {run_id}: work dir {work}", flush=True)
        bench.run()
        results = bench.results
        results["meta"]["elapsed_seconds"] = round(time.monotonic() - started, 1)
        results["meta"]["loadavg_1m_at_end"] = _loadavg()
        report.add_derived(results)
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        out = opts.out_dir / f"{run_id}.json"
        out.write_text(json.dumps(results, indent=2))
        print(report.table(results), flush=True)
        print(f"== results: {out}", flush=True)
        return results, out
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bench is not None:
            for proc in reversed(bench.processes):
                proc.stop()
            if opts.keep_logs or sys.exc_info()[0] is not None:
                print(f"== logs kept in {work}", file=sys.stderr)
        for db in databases:
            asyncio.run(infra.drop_database(db))
        deleted = asyncio.run(infra.delete_redis_keys(prefix))
        print(f"== cleaned up: {len(databases)} databases dropped, {deleted} Redis keys deleted")
        if not opts.keep_logs and sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)


def wait_for_quiet(opts: Options) -> float:
    """``--wait-quiet L``: wait (at most ``wait_max_seconds``) for a 1-minute load below L."""
    if opts.wait_quiet is None:
        return 0.0
    began = time.monotonic()
    while _loadavg() >= opts.wait_quiet and time.monotonic() - began < opts.wait_max_seconds:
        print(f"== waiting for a quiet machine: load {_loadavg()}", flush=True)
        time.sleep(15)
    return round(time.monotonic() - began, 1)


def _raise_interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds per scenario, not minutes")
    parser.add_argument("--seconds", type=int, help="measured seconds per run (default 10)")
    parser.add_argument("--levels", help="concurrent clients, comma-separated (default 1,16,64)")
    parser.add_argument("--only", help="comma-separated scenario groups (see docs/performance.md)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--profile", action="store_true", help="py-spy the server at 16 clients")
    parser.add_argument(
        "--layers",
        action="store_true",
        help="py-spy the cached GET and the PATCH and tabulate server CPU per layer",
    )
    parser.add_argument("--no-two-instances", action="store_true", help="skip nginx + 2 servers")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        metavar="LOAD",
        help="first wait (up to 15 min) until the 1-minute load average is below LOAD",
    )
    args = parser.parse_args(argv)
    opts = Options()
    if args.quick:
        opts = Options(
            seconds=1,
            warmup=0,
            levels=(1, 16),
            sse_seconds=0.5,
            fanout_kits=4,
            fanout_per_kit=3,
            idle_streams=200,
            read_kits=8,
            two_instances=False,
            quick=True,
        )
    if args.seconds:
        opts.seconds = args.seconds
        opts.sse_seconds = float(args.seconds)
    if args.levels:
        opts.levels = tuple(int(x) for x in args.levels.split(","))
    if args.only:
        opts.only = {x.strip() for x in args.only.split(",") if x.strip()}
        if "two_instances" in opts.only:  # asked for by name: run it, --quick or not
            opts.two_instances = True
    opts.out_dir = args.out
    opts.keep_logs = args.keep_logs
    opts.profile = args.profile
    opts.layers = args.layers
    if args.no_two_instances:
        opts.two_instances = False
    opts.wait_quiet = args.wait_quiet
    return opts


def main(argv: list[str] | None = None, *, on_done: Callable[[Path], None] | None = None) -> int:
    opts = parse_args(argv)
    try:
        _, out = execute(opts)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    if on_done is not None:
        on_done(out)
    return 0

"""Where a request's server CPU goes, by layer: py-spy samples charged to the code that spent them.

``bench/run --layers`` samples the server with py-spy (``--nonblocking``, idle samples left out)
while wrk drives the cached GET (``read_cache_hit``) and the PATCH (``patch``). Each sample is a
stack; it is charged to one layer, decided by its innermost *deciding* frame:

* a frame of the service's own code decides by its module (and for a few mixed modules, its
  function): ``api/edge.py`` is the middleware, ``auth/tokens.py`` authentication,
  ``kits/service.py`` the access check, ``audit/`` the audit, and so on (:data:`RULES`);
* a frame of the ASGI server or the framework (uvicorn, Starlette, FastAPI) decides
  "framework": routing, dependency resolution, request and response objects;
* every other library frame (SQLAlchemy, asyncpg, redis-py, structlog, json, pydantic,
  prometheus_client, cryptography, asyncio's helpers) is *transparent*: it is charged to the
  layer that called it. The statements of the access check are the access check's cost, the
  audit's INSERT the audit's.

What no deciding frame claims (the event loop itself, and the drivers' protocol callbacks it
runs, which are not under any request's frames) is its own row, "event loop". The ASGI server
(uvicorn) and the framework are rows of their own: together with the event loop they are
the floor a minimal FastAPI endpoint also pays (``ceiling_fastapi``'s CPU per response). A layer's
CPU per request is its share of the samples × the measured server CPU per response of that
same measurement. The ablations (``read_no_audit``, ``read_no_ratelimit``, ``read_cache_off``)
are an independent estimate of three rows and are shown next to them when they ran.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

FRAMEWORK = "framework (FastAPI, Starlette: routing, dependencies, requests, responses)"
SERVER = "ASGI server (uvicorn: HTTP parsing, transport)"
LOOP = "event loop (no request frame)"
SQL = "SQLAlchemy + asyncpg in SQLAlchemy's greenlets (every layer's statements)"
REDIS = "redis-py in its own tasks (cache and rate-limit commands)"
MIDDLEWARE = "middleware (ids, headers, metrics, methods, body limit, gzip)"
LOGGING = "access log and log processing"
AUTH = "authentication (bearer token)"
RATE_LIMIT = "rate limit"
ACCESS = "access check (kit roles)"
CACHE = "answers cache (near + Redis)"
AUDIT = "audit (events, hash chain)"
CRYPTO = "encryption at rest (decode/encode)"
UOW = "transaction (unit of work, pool, commit)"
REPOSITORY = "answers statements (repository)"
DOMAIN = "domain logic (validation, merge, preconditions)"
PARSING = "request body parsing"
SERIALIZATION = "serialization (JSON, representation)"
AFTER_COMMIT = "after commit (outbox, bus, listeners)"
OTHER = "route handlers and other service code"

# Display order of the table.
LAYERS = (
    LOOP,
    SERVER,
    FRAMEWORK,
    SQL,
    REDIS,
    MIDDLEWARE,
    LOGGING,
    AUTH,
    RATE_LIMIT,
    ACCESS,
    CACHE,
    AUDIT,
    CRYPTO,
    UOW,
    REPOSITORY,
    DOMAIN,
    PARSING,
    SERIALIZATION,
    AFTER_COMMIT,
    OTHER,
)

# Frames under which everything runs (the CLI, uvicorn's start-up, the event loop): they
# never decide, or every orphaned task would be charged to them.
ROOTS = (
    "healthinfo/__main__.py",
    "healthinfo/cli.py",
    "healthinfo/infra/serving.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "uvicorn/main.py",
    "uvicorn/supervisors/",
    "asyncio/",
    "runpy",
)
# (module path under the site or source root, function name prefix or "") -> layer. The
# first rule that matches a frame decides; more specific rules come first.
RULES: tuple[tuple[str, str, str], ...] = (
    ("healthinfo/api/ratelimit.py", "", RATE_LIMIT),
    ("healthinfo/infra/ratelimit.py", "", RATE_LIMIT),
    ("healthinfo/api/edge.py", "", MIDDLEWARE),
    ("healthinfo/api/middleware.py", "", MIDDLEWARE),
    ("healthinfo/api/methods.py", "", MIDDLEWARE),
    ("healthinfo/api/headers.py", "", MIDDLEWARE),
    ("healthinfo/api/profiling.py", "", MIDDLEWARE),
    ("healthinfo/api/compression.py", "", MIDDLEWARE),
    ("healthinfo/fhir/outcome.py", "OperationOutcomeMiddleware", MIDDLEWARE),
    ("starlette/middleware/gzip.py", "", MIDDLEWARE),
    ("healthinfo/api/request_log.py", "", LOGGING),
    ("healthinfo/infra/logging.py", "", LOGGING),
    ("healthinfo/infra/redaction.py", "", LOGGING),
    ("healthinfo/infra/access_log.py", "", LOGGING),
    ("healthinfo/auth/tokens.py", "", AUTH),
    ("healthinfo/api/deps.py", "identify", AUTH),
    ("healthinfo/api/deps.py", "authenticate", AUTH),
    ("healthinfo/api/deps.py", "_verify_bearer", AUTH),
    ("healthinfo/api/deps.py", "read_json_object", PARSING),
    ("healthinfo/api/deps.py", "_depth", PARSING),
    ("healthinfo/api/deps.py", "_refuse_constant", PARSING),
    ("healthinfo/kits/service.py", "", ACCESS),
    ("healthinfo/auth/access.py", "", ACCESS),
    ("healthinfo/health_information/cache.py", "", CACHE),
    ("healthinfo/infra/cache.py", "", CACHE),
    ("healthinfo/infra/resilient_cache.py", "", CACHE),
    ("healthinfo/infra/redis_client.py", "", CACHE),
    ("healthinfo/infra/cache_factory.py", "", CACHE),
    ("healthinfo/health_information/disclosure.py", "audit", AUDIT),
    ("healthinfo/audit/runner.py", "", UOW),
    ("healthinfo/audit/", "", AUDIT),
    ("healthinfo/crypto/", "", CRYPTO),
    ("healthinfo/health_information/codec.py", "", CRYPTO),
    ("healthinfo/common/uow.py", "", UOW),
    ("healthinfo/common/database.py", "", UOW),
    ("healthinfo/health_information/repository.py", "", REPOSITORY),
    ("healthinfo/health_information/preconditions.py", "etag", SERIALIZATION),
    ("healthinfo/health_information/preconditions.py", "", DOMAIN),
    ("healthinfo/health_information/merge.py", "", DOMAIN),
    ("healthinfo/questionnaires/", "", DOMAIN),
    ("healthinfo/api/responses.py", "", SERIALIZATION),
    ("healthinfo/health_information/model.py", "", SERIALIZATION),
    ("healthinfo/common/clock.py", "to_rfc3339", SERIALIZATION),
    ("healthinfo/forwarding/", "", AFTER_COMMIT),
    ("healthinfo/realtime/", "", AFTER_COMMIT),
    ("healthinfo/replication/", "", AFTER_COMMIT),
    ("healthinfo/health_information/service.py", "", DOMAIN),
    ("healthinfo/", "", OTHER),
    ("fastapi/", "", FRAMEWORK),
    ("starlette/", "", FRAMEWORK),
    ("healthinfo/infra/bounded_http.py", "", SERVER),
    ("uvicorn/", "", SERVER),
    ("httptools/", "", SERVER),
    ("h11/", "", SERVER),
)
# Stacks no request frame claims: SQLAlchemy's async API runs the ORM and Core in a greenlet
# whose frames do not lead back to the awaiting coroutine, and redis-py runs each command's
# send in a task of its own (``asyncio.wait_for`` when a socket timeout is set): charged to
# the library, not to the layer that asked.
ORPHANS = (("sqlalchemy/", SQL), ("asyncpg/", SQL), ("redis/", REDIS))


def _frame_location(frame: str) -> tuple[str, str]:
    """``"func (path/to/file.py:12)"`` -> (path, function)."""
    function, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return path, function


def _rule_for(frame: str) -> str | None:
    path, function = _frame_location(frame)
    if any(root in path for root in ROOTS):
        return None
    for module, prefix, layer in RULES:
        if module in path and function.startswith(prefix):
            return layer
        # Nested functions and methods: "Class.method", "outer.<locals>.inner".
        if module in path and prefix and f".{prefix}" in function:
            return layer
    return None


def layer_of(stack: list[str]) -> str:
    """The layer a sample is charged to: its innermost deciding frame's."""
    for frame in reversed(stack):
        layer = _rule_for(frame)
        if layer is not None:
            return layer
    for frame in stack:
        path, _ = _frame_location(frame)
        for library, layer in ORPHANS:
            if library in path:
                return layer
    return LOOP


IDLE_LEAVES = ("Condition.wait", "Event.wait", "Queue.get")
TOP_LEAVES = 8


def attribute(raw: str) -> dict[str, Any]:
    """py-spy ``raw`` (collapsed stacks, ``frame;frame;… count``) -> samples per layer, and
    each layer's busiest innermost frames (to check the rules against)."""
    counts: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_LEAVES):  # idle worker threads
            continue
        layer = layer_of(frames)
        counts[layer] += int(count_text)
        leaves.setdefault(layer, Counter())[frames[-1]] += int(count_text)
    top = {layer: dict(found.most_common(TOP_LEAVES)) for layer, found in leaves.items()}
    return {"samples": sum(counts.values()), "layers": dict(counts), "top_frames": top}


# Ablations: the scenario without the layer, and the layer row it estimates.
ABLATIONS = {
    AUDIT: "read_no_audit",
    RATE_LIMIT: "read_no_ratelimit",
    CACHE: "read_cache_off",
}


def per_request(results: dict[str, Any], scenario: str) -> dict[str, float] | None:
    """CPU ms per request of each layer for one attributed scenario."""
    found = results.get("layers", {}).get(scenario)
    measured = results["scenarios"].get(scenario, {}).get(str(found["clients"])) if found else None
    if not found or not found.get("samples") or not measured:
        return None
    if measured.get("server_cpu_ms_per_request") is None:
        return None
    cpu = float(measured["server_cpu_ms_per_request"])
    total = found["samples"]
    return {
        layer: round(cpu * found["layers"].get(layer, 0) / total, 3)
        for layer in LAYERS
        if found["layers"].get(layer)
    }


def ablation_delta(results: dict[str, Any], layer: str) -> float | None:
    """CPU ms/request of read_cache_hit minus that of the ablation without ``layer``, at the
    clients the attribution was measured at (a negative value: the ablation costs more, e.g.
    no cache means decoding from the database)."""
    found = results.get("layers", {}).get("read_cache_hit")
    other = ABLATIONS.get(layer)
    if not found or other is None:
        return None
    clients = str(found["clients"])
    base = results["scenarios"].get("read_cache_hit", {}).get(clients, {})
    without = results["scenarios"].get(other, {}).get(clients, {})
    a, b = base.get("server_cpu_ms_per_request"), without.get("server_cpu_ms_per_request")
    if a is None or b is None:
        return None
    return round(a - b, 3)


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-layer table: header and rows (empty when no attribution ran)."""
    read = per_request(results, "read_cache_hit")
    patch = per_request(results, "patch")
    if read is None and patch is None:
        return [], []
    found = results.get("layers", {})

    def clients(scenario: str) -> str:
        return str(found[scenario]["clients"]) if scenario in found else "-"

    header = [
        "layer",
        f"GET ms/req (c={clients('read_cache_hit')})",
        "GET share",
        "GET ablation Δ ms",
        f"PATCH ms/req (c={clients('patch')})",
        "PATCH share",
    ]
    rows: list[list[str]] = []
    totals = [_measured(results, "read_cache_hit"), _measured(results, "patch")]
    for layer in LAYERS:
        r = (read or {}).get(layer)
        p = (patch or {}).get(layer)
        if r is None and p is None:
            continue
        delta = ablation_delta(results, layer)
        rows.append(
            [
                layer,
                _ms(r),
                _share(r, totals[0]),
                "" if delta is None else f"{delta:.3f}",
                _ms(p),
                _share(p, totals[1]),
            ]
        )
    rows.append(
        [
            "total (measured server CPU per response)",
            _ms(totals[0] if read else None),
            "100 %" if read else "",
            "",
            _ms(totals[1] if patch else None),
            "100 %" if patch else "",
        ]
    )
    return header, rows


def _measured(results: dict[str, Any], scenario: str) -> float:
    found = results.get("layers", {}).get(scenario)
    if not found:
        return 0.0
    measured = results["scenarios"].get(scenario, {}).get(str(found["clients"]), {})
    return float(measured.get("server_cpu_ms_per_request") or 0.0)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _share(value: float | None, total: float) -> str:
    return "" if value is None or not total else f"{100 * value / total:.1f} %"

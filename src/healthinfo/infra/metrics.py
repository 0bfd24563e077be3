"""Prometheus metrics, on a registry per app so tests and multiple apps never collide.

Names follow Prometheus' naming rules (https://prometheus.io/docs/practices/naming/): every
metric of ours is ``healthinfo_<subsystem>_<name>[_<unit>]``, counters end in ``_total``,
durations are in ``_seconds``. Ratios are not exported: they are computed by Prometheus from the
counters (``deploy/prometheus/recording.yml``), so they can be aggregated across instances and
windows. The process, platform and GC collectors are registered next to ours
(``register_standard_collectors``), as the default registry would have them.

Labels are route *templates* (``/v1/kits/{kitId}/health-information``), never raw paths: a raw
path would put kit ids in metrics and give Prometheus unbounded cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)

PREFIX = "healthinfo_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def register_standard_collectors(registry: CollectorRegistry) -> None:
    """``process_*`` (CPU, memory, file descriptors), ``python_info`` and ``python_gc_*``.

    prometheus_client puts them only on its global registry; ours is a registry of its own,
    so without this an instance's memory and CPU would be missing from every scrape. The
    collectors are stateless readers of ``/proc`` and ``gc``: sharing them between registries
    is what they are made for.
    """
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        register_standard_collectors(r)
        self.http_requests = Counter(
            "healthinfo_http_requests_total",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "healthinfo_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_errors = Counter(
            "healthinfo_db_errors_total",
            "Database errors seen by requests, by kind.",
            ["kind"],
            registry=r,
        )
        self.writes = Counter(
            "healthinfo_writes_total",
            "Writes by operation and outcome (ok, a refusal's code, unavailable, error).",
            ["operation", "outcome"],
            registry=r,
        )
        self.audited_reads = Counter(
            "healthinfo_audited_reads_total",
            "Audited disclosures (reads of answers, exports) by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self.cache_hits = Counter(
            "healthinfo_cache_hits_total", "Cache lookups that found the version.", registry=r
        )
        self.cache_misses = Counter(
            "healthinfo_cache_misses_total",
            "Cache lookups that did not find the version (read from the database).",
            registry=r,
        )
        self.cache_fills = Counter(
            "healthinfo_cache_fills_total",
            "Entries written to the cache (after a miss or a write).",
            registry=r,
        )
        self.cache_errors = Counter(
            "healthinfo_cache_errors_total",
            "Cache errors by kind (timeout, connection, garbage, full, other).",
            ["kind"],
            registry=r,
        )
        self.cache_skipped = Counter(
            "healthinfo_cache_skipped_total",
            "Cache calls skipped while the circuit breaker is open.",
            ["operation"],
            registry=r,
        )
        self.ratelimit_refused = Counter(
            "healthinfo_ratelimit_refused_total",
            "Requests refused by rate limits, by route class and key.",
            ["route_class", "key"],
            registry=r,
        )
        self.ratelimit_errors = Counter(
            "healthinfo_ratelimit_errors_total",
            "Rate-limit storage errors (fell back to in-process counts).",
            registry=r,
        )
        self.audit_failures = Counter(
            "healthinfo_audit_write_failures_total",
            "Audit events that could not be written.",
            registry=r,
        )

    def record_cache_lookup(self, *, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

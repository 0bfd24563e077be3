"""Prometheus metrics, on a registry per app so tests and multiple apps never collide.

Labels are route *templates* (``/v1/kits/{kitId}/health-information``), never raw paths: a raw
path would put kit ids in metrics and give Prometheus unbounded cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _hits: int = 0
    _lookups: int = 0

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.db_errors = Counter(
            "db_errors_total", "Database errors seen by requests, by kind.", ["kind"], registry=r
        )
        self.writes = Counter(
            "health_information_writes_total",
            "Writes of health information by operation and outcome (ok, unchanged, refused code).",
            ["operation", "outcome"],
            registry=r,
        )
        self.cache_requests = Counter(
            "cache_requests_total", "Cache lookups by result (hit, miss).", ["result"], registry=r
        )
        self.cache_fills = Counter(
            "cache_fills_total",
            "Entries written to the cache (after a miss or a write).",
            registry=r,
        )
        self.cache_errors = Counter(
            "cache_errors_total",
            "Cache errors by kind (timeout, connection, garbage, full, other).",
            ["kind"],
            registry=r,
        )
        self.cache_skipped = Counter(
            "cache_skipped_total",
            "Cache calls skipped while the circuit breaker is open.",
            ["operation"],
            registry=r,
        )
        self.cache_hit_ratio = Gauge(
            "cache_hit_ratio", "Hits / (hits + misses) since start.", registry=r
        )
        self.ratelimit_refused = Counter(
            "ratelimit_refused_total",
            "Requests refused by rate limits, by route class and key.",
            ["route_class", "key"],
            registry=r,
        )
        self.ratelimit_errors = Counter(
            "ratelimit_errors_total",
            "Rate-limit storage errors (fell back to in-process counts).",
            registry=r,
        )
        self.audit_failures = Counter(
            "audit_write_failures_total", "Audit events that could not be written.", registry=r
        )

    def record_cache_lookup(self, *, hit: bool) -> None:
        self.cache_requests.labels("hit" if hit else "miss").inc()
        self._lookups += 1
        self._hits += int(hit)
        self.cache_hit_ratio.set(self._hits / self._lookups)

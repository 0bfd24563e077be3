"""Forwarding metrics, on the registry of the app (or of the worker) they belong to.

The backlog gauges are refreshed by the relay from the database (the table is the truth; one
relay's memory is not): alert on ``healthinfo_forwarding_oldest_pending_age_seconds`` and
on ``healthinfo_forwarding_dead_events`` > 0.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ForwardingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge(
            "healthinfo_forwarding_pending_events",
            "Outbox events not yet delivered (including those held behind a dead letter).",
            registry=registry,
        )
        self.oldest_pending_age = Gauge(
            "healthinfo_forwarding_oldest_pending_age_seconds",
            "Age of the oldest pending outbox event; 0 when none is pending.",
            registry=registry,
        )
        self.dead = Gauge(
            "healthinfo_forwarding_dead_events", "Dead-lettered outbox events.", registry=registry
        )
        self.deliveries = Counter(
            "healthinfo_forwarding_deliveries_total",
            "Delivery attempts by outcome: delivered, retry (scheduled again) or dead.",
            ["outcome"],
            registry=registry,
        )
        self.attempt_latency = Histogram(
            "healthinfo_forwarding_attempt_duration_seconds",
            "Duration of one delivery attempt (the POST to the lab).",
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.lease_lost = Counter(
            "healthinfo_forwarding_lease_lost_total",
            "Outcomes not recorded because the claim had expired and was taken by another relay.",
            registry=registry,
        )

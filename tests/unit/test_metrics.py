"""The metrics registry of an app: cache lookups as counters, the standard collectors on it."""

from __future__ import annotations

from prometheus_client import generate_latest

from healthinfo.infra.metrics import Metrics


def value(metrics: Metrics, name: str) -> float:
    return float(metrics.registry.get_sample_value(name) or 0.0)


def test_a_cache_hit_counts_as_a_hit_and_a_miss_as_a_miss() -> None:
    metrics = Metrics()
    metrics.record_cache_lookup(hit=True)
    metrics.record_cache_lookup(hit=True)
    metrics.record_cache_lookup(hit=False)
    assert value(metrics, "healthinfo_cache_hits_total") == 2
    assert value(metrics, "healthinfo_cache_misses_total") == 1


def test_a_lookup_sets_no_gauge_only_counters_move() -> None:
    metrics = Metrics()
    before = {m.name: m.type for m in metrics.registry.collect()}
    metrics.record_cache_lookup(hit=False)
    assert {m.name: m.type for m in metrics.registry.collect()} == before
    assert {before["healthinfo_cache_hits"], before["healthinfo_cache_misses"]} == {"counter"}


def test_every_app_registry_exports_the_process_metrics_not_only_the_first() -> None:
    """The collectors are shared: each app of a process (tests build many) registers them."""
    first, second = Metrics(), Metrics()
    for metrics in (first, second):
        text = generate_latest(metrics.registry).decode()
        assert "\nprocess_resident_memory_bytes " in text
        assert "\npython_info{" in text
        assert "\npython_gc_objects_collected_total{" in text

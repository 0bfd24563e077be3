"""Our metrics follow Prometheus' naming rules (https://prometheus.io/docs/practices/naming/).

Every metric of ours is ``healthinfo_<subsystem>_<name>[_<unit>]`` in base units, counters end
in ``_total``, ratios are recording rules (never gauges), reads are not counted as writes, and
the process and platform collectors are exported next to ours. Checked on a real scrape of
``/metrics`` after traffic, parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from healthinfo.compliance.export import EXPORT
from healthinfo.config import Settings
from healthinfo.health_information.service import READ
from tests.support.answers import COMPLETE
from tests.support.metrics import (
    STANDARD_PREFIXES,
    families,
    label_values,
    our_families,
    sample_value,
    scrape_after_traffic,
)
from tests.support.tokens import auth

SNAKE_CASE = re.compile(r"healthinfo(_[a-z0-9]+)+")
RATIO = re.compile(r"_(ratio|percent|rate)(_|$)")
# Prometheus wants base units: seconds, bytes; ratios 0..1 and computed by rules.
NOT_BASE_UNITS = re.compile(
    r"_(milliseconds|microseconds|ms|us|minutes|hours|days|kilobytes|megabytes|kib|mib|percent)"
    r"(_|$)"
)
# What our labels may be: route templates, methods, statuses, outcomes and kinds. Never a kit
# id, a user, a raw path or an answer (docs/operations.md, "Metrics").
ALLOWED_LABELS = frozenset(
    {"method", "route", "status", "kind", "operation", "outcome", "route_class", "key", "reason"}
)
DISCLOSURES = {READ, EXPORT}


@pytest.fixture
async def scraped(make_settings: Callable[..., Settings]) -> str:
    return await scrape_after_traffic(make_settings())


async def metrics_text(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_every_metric_of_ours_is_prefixed_healthinfo(scraped: str) -> None:
    ours = [family.name for family in our_families(scraped)]
    assert ours
    assert not [name for name in ours if not name.startswith("healthinfo_")]


def test_every_name_is_snake_case_in_base_units(scraped: str) -> None:
    for family in our_families(scraped):
        assert SNAKE_CASE.fullmatch(family.name), family.name
        assert not NOT_BASE_UNITS.search(family.name), family.name


def test_counters_and_only_counters_end_in_total(scraped: str) -> None:
    for family in our_families(scraped):
        if family.type == "counter":
            for sample in family.samples:
                assert sample.name.endswith(("_total", "_created")), sample.name
        else:
            assert not family.name.endswith("_total"), f"{family.type} {family.name}"


def test_durations_are_histograms_in_seconds(scraped: str) -> None:
    histograms = [f.name for f in our_families(scraped) if f.type == "histogram"]
    assert "healthinfo_http_request_duration_seconds" in histograms
    for name in histograms:
        # A count histogram names what it counts (read audit events per batch).
        assert name.endswith(("_seconds", "_bytes", "_events")), name


def test_no_ratio_is_exported_the_rules_compute_it_from_counters(scraped: str) -> None:
    """A gauge of hits / lookups since start can be neither summed over instances nor read
    over a window; deploy/prometheus/recording.yml records the ratio from the counters."""
    for family in our_families(scraped):
        assert not RATIO.search(family.name), family.name
    types = {family.name: family.type for family in our_families(scraped)}
    assert types["healthinfo_cache_hits"] == "counter"
    assert types["healthinfo_cache_misses"] == "counter"


def test_the_process_and_platform_collectors_are_exported(scraped: str) -> None:
    names = {family.name for family in families(scraped)}
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "python_info",
        "python_gc_objects_collected",
    } <= names
    assert sample_value(scraped, "process_resident_memory_bytes") > 0


def test_only_the_standard_collectors_export_unprefixed_names(scraped: str) -> None:
    unprefixed = {
        family.name for family in families(scraped) if not family.name.startswith("healthinfo_")
    }
    assert unprefixed
    assert all(name.startswith(STANDARD_PREFIXES) for name in unprefixed), unprefixed


def test_labels_are_templates_and_outcomes_never_ids_or_values(scraped: str) -> None:
    for family in our_families(scraped):
        for sample in family.samples:
            names = set(sample.labels) - {"le"}
            assert names <= ALLOWED_LABELS, f"{sample.name} {sorted(names - ALLOWED_LABELS)}"


async def test_an_audited_read_is_counted_as_a_read_not_as_a_write(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    url = f"/v1/kits/{kit_id}/health-information"
    assert (await client.put(url, json={"answers": COMPLETE}, headers=auth(user))).is_success
    before = await metrics_text(client)
    assert (await client.get(url, headers=auth(user))).status_code == 200
    after = await metrics_text(client)
    reads = "healthinfo_audited_reads_total"
    assert sample_value(after, reads, operation=READ, outcome="ok") == (
        sample_value(before, reads, operation=READ, outcome="ok") + 1
    )
    assert not label_values(after, "healthinfo_writes_total", "operation") & DISCLOSURES


async def test_an_export_is_counted_as_a_read_not_as_a_write(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    url = f"/v1/kits/{kit_id}/health-information"
    assert (await client.put(url, json={"answers": COMPLETE}, headers=auth(user))).is_success
    before = await metrics_text(client)
    assert (await client.get(f"/v1/kits/{kit_id}/export", headers=auth(user))).status_code == 200
    after = await metrics_text(client)
    reads = "healthinfo_audited_reads_total"
    assert sample_value(after, reads, operation=EXPORT, outcome="ok") == (
        sample_value(before, reads, operation=EXPORT, outcome="ok") + 1
    )
    assert not label_values(after, "healthinfo_writes_total", "operation") & DISCLOSURES


async def test_writes_are_still_counted_as_writes(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    url = f"/v1/kits/{kit_id}/health-information"
    before = await metrics_text(client)
    assert (await client.put(url, json={"answers": COMPLETE}, headers=auth(user))).is_success
    after = await metrics_text(client)
    operations = label_values(after, "healthinfo_writes_total", "operation")
    assert operations
    total = "healthinfo_writes_total"
    moved = [
        op
        for op in operations
        if sample_value(after, total, operation=op, outcome="ok")
        > sample_value(before, total, operation=op, outcome="ok")
    ]
    assert moved
    assert not label_values(after, "healthinfo_audited_reads_total", "operation") - DISCLOSURES

"""Reading ``/metrics`` in tests: an app's scrape after some traffic, and what it exports."""

from __future__ import annotations

import uuid

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

# Families of prometheus_client's process, platform and GC collectors, not named by us.
STANDARD_PREFIXES = ("process_", "python_")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def our_families(text: str) -> list[Metric]:
    """Our families, without the standard collectors' and the ``*_created`` timestamps that
    prometheus_client adds to every counter and histogram (it types them as gauges)."""
    parsed = families(text)
    owners = {f.name for f in parsed if f.type in {"counter", "histogram"}}
    return [
        family
        for family in parsed
        if not family.name.startswith(STANDARD_PREFIXES)
        and not (family.name.endswith("_created") and family.name[: -len("_created")] in owners)
    ]


def exported_names(text: str) -> set[str]:
    """Every name a query may use: sample names, and the series names of empty families."""
    names: set[str] = set()
    for family in families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def sample_value(text: str, name: str, **labels: str) -> float:
    """The sample's value, 0 when the series does not exist (yet)."""
    for family in families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def label_values(text: str, name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in families(text)
        for sample in family.samples
        if sample.name == name and label in sample.labels
    }


async def scrape_after_traffic(settings: Settings) -> str:
    """/metrics of a new app after writes, refusals, audited reads, an export and a 404."""
    app = create_app(settings)
    kit, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    url = f"/v1/kits/{kit}/health-information"
    async with app.router.lifespan_context(app), await open_client(app) as client:
        saved = await client.put(url, json={"answers": COMPLETE}, headers=auth(user))
        assert saved.status_code == 201
        assert (await client.get(url, headers=auth(user))).status_code == 200
        assert (await client.get(url, headers=auth(user))).status_code == 200
        assert (await client.get(f"/v1/kits/{kit}/export", headers=auth(user))).status_code == 200
        assert (await client.post(f"{url}/submit", headers=auth(user))).status_code == 200
        assert (await client.put(url, json={"answers": {}}, headers=auth(user))).status_code == 409
        assert (await client.get("/v1/no-such-route")).status_code == 404
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text

"""The alert rules and the dashboard: valid, unit-tested, and about metrics that exist.

``promtool`` (Debian's ``prometheus`` package; ``scripts/test`` installs it when missing)
checks the rules and runs their unit tests. Every metric an alert or a panel names must be
exported by the app's ``/metrics`` after some traffic (a typo would make an alert that never
fires), and every metric the app exports has a panel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"

PROMQL_WORDS = frozenset(
    {
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "by",
        "without",
        "and",
        "or",
        "unless",
        "on",
        "ignoring",
        "offset",
        "bool",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: apt-get install prometheus (scripts/test installs it)"
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions and keywords removed)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = match.group(0)
        following = expr[match.end() :].lstrip()[:1]
        if name in PROMQL_WORDS or following == "(" or re.fullmatch(r"\d.*", name):
            continue
        names.add(name)
    return names


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_would_catch_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m])\n"
    )
    assert run_promtool("check", "rules", str(broken)).returncode != 0


def test_the_expression_parser_finds_metric_names() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (method, route, le) (rate(http_request_duration_seconds"
        '_bucket{method=~"PUT|POST", route!="unmatched"}[5m]))) > 0.2 and max(up) > 0'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}


def test_the_dashboard_is_valid_json_with_a_query_per_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert panel["title"]
        assert panel["targets"]
        assert all(target["expr"].strip() for target in panel["targets"])


def exported_names(text: str) -> set[str]:
    """Every name a query may use: sample names, and the series names of empty families."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


@pytest.fixture
async def metrics_after_traffic(make_settings: Callable[..., Settings]) -> str:
    """/metrics of an app with forwarding on (its metrics exist only then), after traffic."""
    settings = make_settings(
        forward_url="http://127.0.0.1:9/intake",  # nothing listens: deliveries are retried
        forward_secret="forward-secret-that-is-long-enough-0123456789",
        forward_retry_initial_seconds=30,
        db_pool_size=2,
        db_max_overflow=4,
    )
    app = create_app(settings)
    kit, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    url = f"/v1/kits/{kit}/health-information"
    async with app.router.lifespan_context(app), await open_client(app) as client:
        saved = await client.put(url, json={"answers": COMPLETE}, headers=auth(user))
        assert saved.status_code == 201
        assert (await client.get(url, headers=auth(user))).status_code == 200
        assert (await client.get(url, headers=auth(user))).status_code == 200
        assert (await client.post(f"{url}/submit", headers=auth(user))).status_code == 200
        assert (await client.put(url, json={"answers": {}}, headers=auth(user))).status_code == 409
        assert (await client.get("/v1/no-such-route")).status_code == 404
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_every_alert_and_panel_reads_a_metric_the_app_exports(metrics_after_traffic: str) -> None:
    exported = exported_names(metrics_after_traffic) | {"up"}  # ``up``: Prometheus's own
    expressions: dict[str, list[str]] = {
        "alerts.yml": alert_expressions(),
        "dashboard.json": dashboard_expressions(),
    }
    for source, exprs in expressions.items():
        referenced = set().union(*(metric_names(expr) for expr in exprs))
        assert referenced, source
        unknown = referenced - exported
        assert not unknown, f"{source} reads metrics the app does not export: {sorted(unknown)}"


def test_every_exported_metric_has_a_panel(metrics_after_traffic: str) -> None:
    families: dict[str, Any] = {
        family.name: family for family in text_string_to_metric_families(metrics_after_traffic)
    }
    on_dashboard = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    missing = []
    for name, family in families.items():
        if name.endswith("_created"):
            continue  # prometheus_client's creation timestamps of counters and histograms
        candidates = {name, name + "_total", *(name + suffix for suffix in HISTOGRAM_SUFFIXES)}
        if family.type == "gauge":
            candidates = {name}
        if not candidates & on_dashboard:
            missing.append(name)
    assert not missing, f"metrics without a panel in deploy/grafana/dashboard.json: {missing}"


def test_the_traffic_moved_the_metrics_the_slas_are_about(metrics_after_traffic: str) -> None:
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics_after_traffic)
        for sample in family.samples
    }
    assert any(
        name == "health_information_writes_total" and dict(labels).get("outcome") == "ok"
        for (name, labels) in samples
    ), "successful writes are not counted"
    assert any(
        name == "health_information_writes_total"
        and dict(labels).get("outcome") == "already-submitted"
        for (name, labels) in samples
    ), "refused writes are not counted by their code"
    assert any(name == "http_request_duration_seconds_bucket" for name, _ in samples)
    assert any(name == "cache_requests_total" for name, _ in samples)

"""The alert and recording rules and the dashboard: valid, unit-tested, about metrics that exist.

``promtool`` (Debian's ``prometheus`` package; ``scripts/test`` installs it when missing)
checks the rules and runs their unit tests. Every metric an alert, a recording rule or a panel
names must be exported by the app's ``/metrics`` after some traffic, or recorded by a rule (a
typo, or a metric renamed in the code only, would make an alert that never fires), and every
metric of ours the app exports has a panel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from healthinfo.config import Settings
from tests.support.metrics import (
    HISTOGRAM_SUFFIXES,
    exported_names,
    label_values,
    our_families,
    scrape_after_traffic,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RECORDING = ROOT / "deploy" / "prometheus" / "recording.yml"
RULE_FILES = (RECORDING, RULES)
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
        "group_left",
        "group_right",
    }
)
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORDED_NAME = re.compile(r"[a-z_]+:healthinfo_[a-z0-9_]+:[a-z0-9_]+")


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


def rules_of(path: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_expressions() -> list[str]:
    return [rule["expr"] for rule in rules_of(RULES)]


def recording_expressions() -> list[str]:
    return [rule["expr"] for rule in rules_of(RECORDING)]


def recorded_names() -> set[str]:
    return {rule["record"] for path in RULE_FILES for rule in rules_of(path) if "record" in rule}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_promtool_accepts_the_rules(path: Path) -> None:
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_tests_load_the_recording_rules_with_the_alerts() -> None:
    """The cache alert reads recorded series: tested without them, it could never fire."""
    listed = yaml.safe_load(RULE_TESTS.read_text())["rule_files"]
    assert {RULE_TESTS.parent / name for name in listed} == set(RULE_FILES)


def test_recorded_series_are_named_level_metric_operations() -> None:
    names = recorded_names()
    assert names
    for name in names:
        assert RECORDED_NAME.fullmatch(name), name


def test_the_cache_hit_ratio_is_recorded_from_the_hit_and_miss_counters() -> None:
    ratio = {rule["record"]: rule["expr"] for rule in rules_of(RECORDING)}[
        "job:healthinfo_cache_hits_per_lookups:ratio_rate5m"
    ]
    read = set().union(
        *(metric_names(expr) for expr in recording_expressions()),
    )
    assert metric_names(ratio) <= recorded_names()
    assert {"healthinfo_cache_hits_total", "healthinfo_cache_misses_total"} <= read


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
    recorded = "job:healthinfo_cache_hits:rate5m / job:healthinfo_cache_lookups:rate5m < 0.9"
    assert metric_names(recorded) == {
        "job:healthinfo_cache_hits:rate5m",
        "job:healthinfo_cache_lookups:rate5m",
    }


def test_the_dashboard_is_valid_json_with_a_query_per_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert panel["title"]
        assert panel["targets"]
        assert all(target["expr"].strip() for target in panel["targets"])


def test_promtool_accepts_every_dashboard_query(tmp_path: Path) -> None:
    """Grafana never parses PromQL before a panel is opened: each query goes through promtool
    as a recording rule of its own, so a syntax error fails here, not on the dashboard."""
    rules = [
        {"record": f"dashboard_panel_{number}", "expr": expr}
        for number, expr in enumerate(dashboard_expressions())
    ]
    panels = tmp_path / "dashboard-queries.yml"
    panels.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", "--lint=none", str(panels))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


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
    return await scrape_after_traffic(settings)


def test_every_alert_rule_and_panel_reads_a_metric_the_app_exports_or_a_rule_records(
    metrics_after_traffic: str,
) -> None:
    exported = exported_names(metrics_after_traffic) | {"up"}  # ``up``: Prometheus's own
    known = exported | recorded_names()
    expressions: dict[str, list[str]] = {
        "alerts.yml": alert_expressions(),
        "recording.yml": recording_expressions(),
        "dashboard.json": dashboard_expressions(),
    }
    for source, exprs in expressions.items():
        referenced = set().union(*(metric_names(expr) for expr in exprs))
        assert referenced, source
        unknown = referenced - known
        assert not unknown, f"{source} reads metrics the app does not export: {sorted(unknown)}"


def test_every_recorded_series_is_read_by_an_alert_or_a_panel() -> None:
    read = set().union(*(metric_names(e) for e in alert_expressions() + dashboard_expressions()))
    read |= set().union(*(metric_names(e) for e in recording_expressions()))
    assert not recorded_names() - read


def test_the_rules_and_the_dashboard_read_only_metrics_of_ours_or_standard_ones() -> None:
    """An old, unprefixed name left in a rule or a panel would read nothing, silently."""
    exprs = alert_expressions() + recording_expressions() + dashboard_expressions()
    for name in set().union(*(metric_names(expr) for expr in exprs)):
        assert name.startswith(("healthinfo_", "process_", "python_")) or (
            name in recorded_names()
        ), name


def test_every_exported_metric_has_a_panel(metrics_after_traffic: str) -> None:
    """Of ours: the process and platform collectors' are standard (some have panels)."""
    families = {family.name: family for family in our_families(metrics_after_traffic)}
    on_dashboard = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    missing = []
    for name, family in families.items():
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
        name == "healthinfo_writes_total" and dict(labels).get("outcome") == "ok"
        for (name, labels) in samples
    ), "successful writes are not counted"
    assert any(
        name == "healthinfo_writes_total" and dict(labels).get("outcome") == "already-submitted"
        for (name, labels) in samples
    ), "refused writes are not counted by their code"
    assert any(name == "healthinfo_http_request_duration_seconds_bucket" for name, _ in samples)
    assert samples[("healthinfo_cache_hits_total", ())] >= 1
    assert label_values(metrics_after_traffic, "healthinfo_audited_reads_total", "operation")


def operations_metrics_section() -> str:
    text = (ROOT / "docs" / "operations.md").read_text()
    return text[text.index("\n## Metrics\n") : text.index("\n## Alerts\n")]


def documented(section: str) -> set[str]:
    """Names in backquotes, labels dropped (``healthinfo_db_errors_total{kind}``)."""
    return {
        re.sub(r"\{.*", "", name) for name in re.findall(r"`([a-z0-9_:*]+(?:\{[^`]*\})?)`", section)
    }


def test_every_metric_of_ours_is_in_the_operations_metrics_table(
    metrics_after_traffic: str,
) -> None:
    section = operations_metrics_section()
    table = section[: section.index("### Renamed metrics")]
    names = documented(table)
    prefixes = tuple(name[:-1] for name in names if name.endswith("*"))
    missing = [
        family.name
        for family in our_families(metrics_after_traffic)
        if not {family.name, family.name + "_total"} & names
        and not family.name.startswith(prefixes)
    ]
    assert not missing, f"docs/operations.md, Metrics, does not list {missing}"


def test_the_documented_renames_lead_from_names_no_longer_exported_to_exported_ones(
    metrics_after_traffic: str,
) -> None:
    exported = exported_names(metrics_after_traffic) | recorded_names()
    section = operations_metrics_section()
    renames = section[section.index("### Renamed metrics") :]
    rows = [line.split("|")[1:3] for line in renames.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    for old, new in rows:
        assert documented(old), old
        assert documented(new), new
        assert not documented(old) & exported, old
        assert documented(new) <= exported, new

"""The chart's alert rules and Grafana dashboard, checked by real tools: promtool loads the rules
and runs their unit tests (alerts_test.yaml: every alert fires on synthetic series), every
dashboard query is valid PromQL, and every metric either uses exists in the catalogues of the
runtime and the operator (the drift guard; that the catalogues are what /metrics exposes is
tested in tests/unit/observability and tests/unit/operator, and against running members with a
real Prometheus in tests/integration/test_prometheus_scrape.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.prometheus import (
    RULES,
    alert_rules,
    dashboard,
    dashboard_queries,
    metric_names,
    promtool,
)
from threadweaver.observability.metrics import PROCESS_METRICS, RUNTIME_METRICS, sample_names
from threadweaver_operator.metrics import OPERATOR_METRICS

HERE = Path(__file__).parent
UNIT_TESTS = HERE / "alerts_test.yaml"


def known_samples() -> set[str]:
    names = set(sample_names(RUNTIME_METRICS)) | set(sample_names(PROCESS_METRICS))
    for m in OPERATOR_METRICS:
        if m.type == "histogram":
            names |= {f"{m.name}_bucket", f"{m.name}_sum", f"{m.name}_count"}
        else:
            names.add(m.name)
    return names


def test_promtool_loads_the_rules():
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


def test_promtool_fires_every_alert_on_synthetic_series():
    proc = promtool("test", "rules", UNIT_TESTS.name, cwd=HERE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    silent = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    alerts = {r["alert"] for r in alert_rules()}
    assert fired == alerts
    assert silent >= alerts - {"ThreadWeaverOperatorReconcileFailing"}


def test_every_alert_says_what_it_means():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert rule.get("for"), rule["alert"]


def test_every_dashboard_query_is_valid_promql(tmp_path):
    queries = dashboard_queries()
    assert len(queries) > 30
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_has_the_panels_asked_for():
    titles = " | ".join(t for t, _ in dashboard_queries())
    for words in (
        "Commands/s",
        "Command latency",
        "errors",
        "Projection lag",
        "Handoff",
        "DynamoDB throttled",
        "Entities",
    ):
        assert words in titles, words
    d = dashboard()
    assert d["uid"] == "thread-weaver"
    assert {v["name"] for v in d["templating"]["list"]} == {"datasource", "namespace"}


def test_every_metric_the_dashboard_and_the_rules_use_exists():
    known = known_samples()
    used = {n for _, expr in dashboard_queries() for n in metric_names(expr)}
    used |= {n for rule in alert_rules() for n in metric_names(rule["expr"])}
    for var in dashboard()["templating"]["list"]:
        if isinstance(var.get("query"), dict):
            used |= metric_names(var["query"]["query"])
    assert used and used <= known, sorted(used - known)
    # and the lag gauges shared with the projections work are exactly these
    assert {
        "threadweaver_projection_lag_seconds",
        "threadweaver_projection_lag_events",
    } <= used


def test_operations_doc_lists_every_metric_and_every_alert():
    doc = (Path(__file__).parents[3] / "docs" / "operations.md").read_text()
    monitoring = doc[doc.index("## Monitoring") :]
    for m in (*RUNTIME_METRICS, *OPERATOR_METRICS):
        assert f"`{m.name}`" in monitoring, m.name
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in monitoring, rule["alert"]

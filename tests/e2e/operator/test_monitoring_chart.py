"""The chart's monitoring objects, rendered by the real helm: the dashboard ConfigMap with the
Grafana sidecar's label, the PrometheusRule holding exactly the rule file, the operator's
PodMonitor and metrics port; all off by default."""

from __future__ import annotations

import json

import pytest
import yaml
from test_operator_helm import CHART, helm

pytestmark = pytest.mark.e2e


def render(*sets: str) -> list[dict]:
    args = ["template", "tw", str(CHART), "--namespace", "ops"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_monitoring_objects_are_off_by_default_and_the_metrics_port_is_on(controlplane):
    docs = render()
    assert not [d for d in docs if d["kind"] in ("PrometheusRule", "PodMonitor", "ConfigMap")]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=8082" in container["args"]
    assert {"name": "metrics", "containerPort": 8082} in container["ports"]


def test_dashboard_rules_and_operator_pod_monitor_when_enabled(controlplane):
    docs = render(
        "monitoring.dashboard.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.labels.release=prom",
        "monitoring.operatorPodMonitor.enabled=true",
    )
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["thread-weaver.json"])
    assert shipped == json.loads((CHART / "files/dashboards/thread-weaver.json").read_text())
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["spec"] == yaml.safe_load(
        (CHART / "files/alerts/thread-weaver.rules.yaml").read_text()
    )
    (pm,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert pm["spec"]["selector"]["matchLabels"].items() <= (
        dep["spec"]["template"]["metadata"]["labels"].items()
    )
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART)).stdout

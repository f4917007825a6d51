"""spec.monitoring.podMonitor: the operator's plan applies a PodMonitor where the
monitoring.coreos.com API is served, says so in a condition where it is not, and deletes the
PodMonitor once turned off (pure planning, no API)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.operator_observations import observation
from threadweaver_operator import names, planning
from threadweaver_operator.monitoring import API, pod_monitor
from threadweaver_operator.spec import ClusterSpec
from threadweaver_operator.steps import Apply, Delete, Post, WriteStatus

ON = {"monitoring": {"podMonitor": True, "interval": "15s", "labels": {"release": "prom"}}}


def status_of(plan) -> dict:
    (write,) = plan.of(WriteStatus)
    return dict(write.status)


def monitoring_condition(plan) -> dict | None:
    return next((c for c in status_of(plan)["conditions"] if c["type"] == "Monitoring"), None)


def pod_monitors(plan) -> list[dict]:
    return [s.obj for s in plan.of(Apply) if s.obj["kind"] == "PodMonitor"]


def test_a_pod_monitor_is_applied_where_the_api_is_served():
    o = observation(spec=ON, pod_monitor_api=True)
    p = planning.plan(o)
    (pm,) = pod_monitors(p)
    assert pm["apiVersion"] == API and pm["metadata"]["name"] == "chat"
    assert pm["metadata"]["labels"]["release"] == "prom"
    assert pm["metadata"]["ownerReferences"] == [o.owner]
    assert pm["spec"]["selector"]["matchLabels"] == names.selector_labels("chat")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team"]}
    assert pm["spec"]["podMetricsEndpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s"}
    ]
    (step,) = [s for s in p.of(Apply) if s.obj["kind"] == "PodMonitor"]
    assert [e.reason for e in step.events] == ["PodMonitorCreated"]
    cond = monitoring_condition(p)
    assert cond["status"] == "True" and cond["reason"] == "PodMonitorApplied"
    again = planning.plan(observation(spec=ON, pod_monitor_api=True, pod_monitor=pm))
    (step,) = [s for s in again.of(Apply) if s.obj["kind"] == "PodMonitor"]
    assert step.events == ()  # re-applied, not announced again


def test_without_the_api_a_condition_and_one_warning_say_so():
    p = planning.plan(observation(spec=ON, pod_monitor_api=False))
    assert not pod_monitors(p)
    cond = monitoring_condition(p)
    assert cond["status"] == "False" and cond["reason"] == "PodMonitorApiMissing"
    assert API in cond["message"]
    (warning,) = [s for s in p.of(Post) if s.event.reason == "PodMonitorApiMissing"]
    assert warning.event.type == "Warning"
    status = status_of(p)
    assert status["phase"] != "Failed"  # monitoring never fails a cluster
    again = planning.plan(observation(spec=ON, pod_monitor_api=False, warned={warning.warning_key}))
    assert not [s for s in again.of(Post) if s.event.reason == "PodMonitorApiMissing"]


def test_turned_off_the_pod_monitor_is_deleted_and_the_condition_goes():
    spec = ClusterSpec.from_resource("chat", "team", {"image": "i"})
    existing = pod_monitor(spec)
    p = planning.plan(observation(pod_monitor_api=True, pod_monitor=existing))
    assert [(d.kind, d.name) for d in p.of(Delete)] == [("PodMonitor", "chat")]
    assert monitoring_condition(p) is None
    quiet = planning.plan(observation())
    assert not quiet.of(Delete) and not pod_monitors(quiet) and monitoring_condition(quiet) is None


def test_monitoring_spec_defaults_and_problems():
    spec = ClusterSpec.from_resource("c", "ns", {"image": "i"})
    assert spec.monitoring.pod_monitor is False and spec.monitoring.interval == "30s"
    bad = ClusterSpec.from_resource("c", "ns", {"image": "i", "monitoring": {"interval": "soon"}})
    assert any(p.startswith("spec.monitoring.interval") for p in bad.problems())


def test_the_crd_declares_spec_monitoring():
    crd = yaml.safe_load(
        (Path(__file__).parents[3] / "crds" / "threadweavercluster.yaml").read_text()
    )
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["monitoring"]["properties"]
    assert props["podMonitor"] == {
        "type": "boolean",
        "default": False,
        "description": "Create a PodMonitor for the runtime pods.",
    }
    assert props["interval"]["default"] == "30s"

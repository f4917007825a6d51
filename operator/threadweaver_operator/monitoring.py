"""``spec.monitoring.podMonitor``: the PodMonitor of a cluster's runtime pods (pure).

With ``podMonitor: true`` and the ``monitoring.coreos.com/v1`` API served (the Prometheus
Operator is installed), the operator applies a PodMonitor named after the cluster that scrapes
``/metrics`` on the runtime pods' ``http`` port every ``spec.monitoring.interval``. Without that
API it creates nothing and the ``Monitoring`` condition is False with reason
``PodMonitorApiMissing`` (a Warning Event says so once). Turned off again, an existing
PodMonitor is deleted. The condition exists only while a PodMonitor is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import names
from .events import Event
from .spec import ClusterSpec
from .status import Condition
from .steps import Apply, Delete, Step

__all__ = ["API", "MonitoringPlan", "plan_monitoring", "pod_monitor"]

API = "monitoring.coreos.com/v1"
CONDITION = "Monitoring"


def pod_monitor(spec: ClusterSpec, owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": names.statefulset(spec.name),
        "namespace": spec.namespace,
        "labels": {**names.labels(spec.name, "runtime"), **spec.monitoring.labels},
    }
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": API,
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": names.selector_labels(spec.name)},
            "namespaceSelector": {"matchNames": [spec.namespace]},
            "podMetricsEndpoints": [
                {"port": "http", "path": "/metrics", "interval": spec.monitoring.interval}
            ],
        },
    }


@dataclass(frozen=True)
class MonitoringPlan:
    steps: tuple[Step, ...] = ()
    warning: Event | None = None  # posted once (the caller deduplicates)
    condition: Condition | None = None


def plan_monitoring(
    spec: ClusterSpec,
    owner: Mapping[str, Any] | None,
    api_served: bool | None,
    existing: Mapping[str, Any] | None,
) -> MonitoringPlan:
    """``api_served``: whether monitoring.coreos.com/v1 is served (None: not looked up);
    ``existing``: the cluster's PodMonitor as observed."""
    name = names.statefulset(spec.name)
    if not spec.monitoring.pod_monitor:
        if existing is not None:
            event = Event("Normal", "PodMonitorDeleted", f"deleted PodMonitor {name}")
            return MonitoringPlan(steps=(Delete("PodMonitor", name, (event,)),))
        return MonitoringPlan()
    if not api_served:
        message = (
            f"spec.monitoring.podMonitor: the {API} API (Prometheus Operator) is not served "
            "by this cluster: no PodMonitor created"
        )
        return MonitoringPlan(
            warning=Event("Warning", "PodMonitorApiMissing", message),
            condition=Condition(CONDITION, "False", "PodMonitorApiMissing", message),
        )
    events = (
        (Event("Normal", "PodMonitorCreated", f"created PodMonitor {name}"),)
        if existing is None
        else ()
    )
    return MonitoringPlan(
        steps=(Apply(pod_monitor(spec, owner), events),),
        condition=Condition(
            CONDITION,
            "True",
            "PodMonitorApplied",
            f"PodMonitor {name} scrapes /metrics of the runtime pods every "
            f"{spec.monitoring.interval}",
        ),
    )

"""Observability of a runtime member: the metric catalogue (:mod:`.metrics`), the
instrumentation set around the composition root's objects (:mod:`.instrumentation`) and the
prometheus_client collector that exposes both on ``GET /metrics`` (:mod:`.collector`).

``install(runtime)`` is the one call the composition root makes, once the runtime's objects
exist and before it starts them.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry

from .collector import RuntimeCollector
from .instrumentation import instrument
from .recorders import Recorders

if TYPE_CHECKING:
    from ..server import Runtime

__all__ = ["RuntimeCollector", "install"]

_installed: weakref.WeakKeyDictionary[CollectorRegistry, RuntimeCollector] = (
    weakref.WeakKeyDictionary()
)


def install(runtime: Runtime, registry: CollectorRegistry | None = None) -> RuntimeCollector:
    """Instrument ``runtime`` and expose its metrics in ``registry`` (default: the process's
    prometheus_client registry, which the HTTP API's ``/metrics`` serves).

    A registry holds one runtime collector: a later runtime in the same process (tests) takes
    the collector over, since metric names must be unique in a registry."""
    registry = REGISTRY if registry is None else registry
    recorders = Recorders()
    lag = instrument(runtime, recorders)
    collector = _installed.get(registry)
    if collector is None:
        collector = _installed[registry] = RuntimeCollector(runtime, recorders, lag)
        registry.register(collector)
    else:
        collector.runtime, collector.recorders, collector.lag = runtime, recorders, lag
    return collector

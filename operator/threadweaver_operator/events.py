"""Kubernetes Events on the ThreadWeaverCluster, posted through Kopf's posting queue.

Every action of a pass is an Event. A Warning is posted once per distinct message (its
:func:`warning_key` is remembered in the cluster's state) until the problem goes away, so that a
problem that lasts does not post an Event every few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableSet
from dataclasses import dataclass
from typing import Any, cast

__all__ = ["Event", "emit", "post", "warn_once", "warning_key"]

log = logging.getLogger("threadweaver_operator")


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


def warning_key(reason: str, message: str) -> str:
    return f"{reason}:{message}"


def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on the cluster object (through Kopf's posting queue)."""
    import kopf  # here: the modules that plan (and the kubectl plugin) run without Kopf

    try:
        kopf.event(cast(kopf.Body, dict(body)), type=type_, reason=reason, message=message[:1000])
    except LookupError:  # outside an operator context (unit tests): logging is all we can do
        pass


def emit(body: Mapping[str, Any], event: Event) -> None:
    """Log ``event`` and post it."""
    meta = body["metadata"]
    log.log(
        logging.WARNING if event.type == "Warning" else logging.INFO,
        "%s/%s: %s: %s",
        meta.get("namespace"),
        meta["name"],
        event.reason,
        event.message,
    )
    post(body, event.type, event.reason, event.message)


def warn_once(body: Mapping[str, Any], warned: MutableSet[str], reason: str, message: str) -> None:
    """A Warning Event, unless this one was posted already (``warned``)."""
    key = warning_key(reason, message)
    if key in warned:
        return
    warned.add(key)
    emit(body, Event("Warning", reason, message))

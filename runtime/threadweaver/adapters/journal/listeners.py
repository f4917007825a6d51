"""In-process append notifications, shared by the journals (the `Journal.subscribe` port)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ...application.ports import AppendListener, StoredEvent

log = logging.getLogger(__name__)


class AppendListeners:
    """Listeners called with the events of each durable append; one failing listener neither
    stops the others nor the journal."""

    def __init__(self) -> None:
        self._listeners: list[AppendListener] = []

    def subscribe(self, listener: AppendListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def notify(self, events: Sequence[StoredEvent]) -> None:
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("journal listener failed")

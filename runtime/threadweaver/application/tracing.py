"""The tracing port: spans around the steps of a command, and the W3C trace context that links
them across processes and to the projection.

Tracing is off by default; then `tracer()` is `NOOP`, whose spans cost one call and which
imports nothing. With `--otel-endpoint` the composition root (server.py) installs the
OpenTelemetry adapter (adapters/otel_tracing.py) with `install`. The application and the
adapters only call `tracer()`, so they never import OpenTelemetry.

A trace context is the W3C carrier (`{"traceparent": ..., "tracestate": ...}`): it travels in
the headers of a forwarded command and on each stored event's envelope
(application/event_mapper.py, `traceContext`), so that the projection's span can link to the
span of the append that wrote the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Literal, Protocol

SpanKind = Literal["internal", "server", "client"]
Attributes = Mapping[str, str | int | float | bool]


class Tracer(Protocol):
    """What the runtime records spans with."""

    #: False for the no-op tracer: callers skip building attributes and links
    enabled: bool

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Attributes | None = None,
        parent: Mapping[str, str] | None = None,
        links: Iterable[Mapping[str, str]] = (),
    ) -> AbstractContextManager[None]:
        """A span, current while the block runs: a child of the current span, or of the
        W3C carrier `parent` (a request's headers); `links` are the carriers it is linked to."""
        ...

    def trace_context(self) -> dict[str, str] | None:
        """The W3C carrier of the current span, None without one."""
        ...

    def current_ids(self) -> tuple[str, str] | None:
        """(trace id, span id) in hex of the current span, for log lines; None without one."""
        ...


class NoopTracer:
    """Tracing off: no spans, no trace context."""

    enabled = False
    _NULL: AbstractContextManager[None] = nullcontext()

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Attributes | None = None,
        parent: Mapping[str, str] | None = None,
        links: Iterable[Mapping[str, str]] = (),
    ) -> AbstractContextManager[None]:
        return self._NULL

    def trace_context(self) -> dict[str, str] | None:
        return None

    def current_ids(self) -> tuple[str, str] | None:
        return None


NOOP: Tracer = NoopTracer()
_installed: Tracer = NOOP


def install(tracer: Tracer) -> None:
    """Make `tracer` the process's tracer (NOOP turns tracing off again)."""
    global _installed
    _installed = tracer


def tracer() -> Tracer:
    """The process's tracer (NOOP unless the composition root installed another)."""
    return _installed

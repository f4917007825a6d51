"""Kubernetes probes. `/live`: 200 whenever the event loop answers. `/ready`: 200 when every
readiness check is true, else 503 naming the failing checks.

Without a `readiness` callable the read model's `ping()` is the only check (`readModel`).
A readiness callable that raises or takes longer than `READY_TIMEOUT` counts as failing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .wire import json_response

if TYPE_CHECKING:
    from ...application.ports import ReadModel

log = logging.getLogger("threadweaver.http")

Readiness = Callable[[], Awaitable[dict[str, bool]]]
READY_TIMEOUT = 5.0


def ping_readiness(queries: ReadModel) -> Readiness:
    async def ready() -> dict[str, bool]:
        try:
            await queries.ping()
        except Exception:
            log.warning("read model ping failed", exc_info=True)
            return {"readModel": False}
        return {"readModel": True}

    return ready


class Probes:
    __slots__ = ("_readiness",)

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    async def live(self, request: web.Request) -> web.Response:
        return json_response({"status": "live"})

    async def ready(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                checks = dict(await self._readiness())
        except Exception as exc:
            log.warning("readiness check failed", exc_info=True)
            checks = {"readiness": False}
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return json_response(
                {
                    "status": "not ready",
                    "checks": checks,
                    "failing": ["readiness"],
                    "error_messages": [f"readiness: {reason}"],
                },
                status=503,
            )
        checks = {str(k): bool(v) for k, v in checks.items()}
        failing = [name for name, ok in checks.items() if not ok]
        if failing:
            return json_response(
                {
                    "status": "not ready",
                    "checks": checks,
                    "failing": failing,
                    "error_messages": [f"not ready: {', '.join(failing)}"],
                },
                status=503,
            )
        return json_response({"status": "ready", "checks": checks, "failing": []})

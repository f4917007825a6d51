"""The one middleware around every handler: metrics, CORS and error answers.

It does what three middlewares would (outermost first: metrics, CORS, errors; see metrics.py,
cors.py and errors.py for each concern) in one layer: every middleware is a coroutine frame and
an aiohttp wrapper per request, a cost measured on the command path of the benchmarks.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .cors import add_cors_headers, preflight
from .errors import Handler, error_response_for
from .metrics import HttpMetrics


def edge_middleware(metrics: HttpMetrics, max_body_bytes: int) -> Any:
    clock = time.perf_counter
    observe = metrics.observe

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        metrics.in_flight += 1
        status = 500
        try:
            answer: web.StreamResponse | None = (
                preflight(request) if request.method == "OPTIONS" else None
            )
            if answer is None:
                try:
                    answer = await handler(request)
                except Exception as exc:
                    answer = error_response_for(exc, request, max_body_bytes)
                    if answer is None:  # a redirect: aiohttp answers it
                        status = exc.status  # type: ignore[attr-defined]
                        raise
                add_cors_headers(request, answer)
            response: web.StreamResponse = answer
            status = response.status
            return response
        finally:
            metrics.in_flight -= 1
            observe(request, status, clock() - start)

    return edge

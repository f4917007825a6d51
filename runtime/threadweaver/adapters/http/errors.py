"""Errors -> JSON `{"error_messages": [...]}` responses, for every failure the API can have.

| raised                                   | status | body                                     |
|------------------------------------------|--------|------------------------------------------|
| ApiError (validation, body, time-outs)   | its own| its messages                             |
| domain.ValidationError                   | 400    | its field messages                       |
| domain.DomainError NOT_FOUND/FORBIDDEN/CONFLICT | 404/403/409 | the domain's (upstream's) message |
| application.idempotency.IdempotencyKeyReused | 422 | its message (also once forwarded)   |
| ApiError 401/403 from auth.py (--auth jwt)| 401/403| why; 401 has `WWW-Authenticate: Bearer`  |
| application.gateway.ShardUnavailable     | 503    | its message, `Retry-After` (s, rounded up)|
| application.gateway.NotOwner             | 503    | owner named, `Retry-After: 1` (see below)|
| application.ports.JournalUnavailable     | 503    | transient journal message, `Retry-After: 1`|
| application.ports.JournalError (other)   | 503    | journal message                          |
| application.ports.ReadModelUnavailable   | 503    | read model unreachable, `Retry-After: 1` |
| aiohttp HTTPException (404, 405, 413...) | its own| a readable message; 405 keeps `Allow`    |
| anything else                            | 500    | "There was an internal server error." (logged with traceback) |

`NotOwner`: the thread's shard is owned by another member and the gateway could not forward the
command there itself (application.sharding.Member forwards through its peer client; it raises
`NotOwner` when it has none or knows no address of the owner yet). It is answered 503 with
`Retry-After: 1` (the shard map will name a reachable owner shortly) rather than re-raised,
which would make aiohttp answer a non-JSON 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from ...application.gateway import NotOwner, ShardUnavailable
from ...application.idempotency import is_key_reused
from ...application.ports import JournalError, JournalUnavailable, ReadModelUnavailable
from ...domain.errors import DomainError, ErrorKind, ValidationError

log = logging.getLogger("threadweaver.http")

INTERNAL_ERROR = "There was an internal server error."
NOT_FOUND = "The requested resource could not be found."
JOURNAL_UNAVAILABLE = "The event journal is temporarily unavailable; retry later."
JOURNAL_ERROR = "The event journal could not serve the request."

STATUS_OF_KIND = {ErrorKind.NOT_FOUND: 404, ErrorKind.FORBIDDEN: 403, ErrorKind.CONFLICT: 409}


class ApiError(Exception):
    """An error answer decided by the adapter itself (validation, body, time-outs)."""

    def __init__(
        self, status: int, messages: list[str], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__("; ".join(messages))
        self.status = status
        self.messages = messages
        self.headers = headers


def error_response(
    status: int, messages: list[str], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error_messages": messages}),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def retry_after(seconds: float) -> str:
    """Whole seconds, rounded up (HTTP allows no fractions); 1 for nonsense values."""
    try:
        return str(max(0, math.ceil(seconds)))
    except (TypeError, ValueError, OverflowError):
        return "1"


def _from_http_exception(exc: web.HTTPException, max_body_bytes: int) -> web.Response:
    status = exc.status
    headers = None
    if status == 404:
        message = NOT_FOUND
    elif status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods | {"OPTIONS"}))
        message = f"HTTP method not allowed, supported methods: {allowed}"
        headers = {"Allow": allowed}
    elif status == 413:
        message = f"The request content was too large: at most {max_body_bytes} bytes are allowed."
    else:
        message = exc.text if exc.text and not exc.text.startswith(f"{status}:") else exc.reason
    return error_response(status, [message], headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response_for(
    exc: Exception, request: web.Request, max_body_bytes: int
) -> web.Response | None:
    """The JSON answer for an exception raised by a handler (table above); None for an
    HTTPException below 400 (a redirect), which the caller re-raises for aiohttp."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.messages, exc.headers)
    if isinstance(exc, DomainError):
        if is_key_reused(exc):
            return error_response(422, [exc.message])
        return error_response(STATUS_OF_KIND.get(exc.kind, 409), [exc.message])
    if isinstance(exc, ValidationError):
        return error_response(400, exc.messages)
    if isinstance(exc, ShardUnavailable):
        return error_response(
            503,
            [str(exc) or "The shard is not available here yet."],
            {"Retry-After": retry_after(exc.retry_after)},
        )
    if isinstance(exc, JournalUnavailable):
        log.warning("journal unavailable for %s %s", request.method, request.path, exc_info=exc)
        return error_response(503, [JOURNAL_UNAVAILABLE], {"Retry-After": "1"})
    if isinstance(exc, JournalError):
        log.error("journal error for %s %s", request.method, request.path, exc_info=exc)
        return error_response(503, [JOURNAL_ERROR])
    if isinstance(exc, ReadModelUnavailable):
        log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(503, [f"{exc}; retry shortly"], {"Retry-After": "1"})
    if isinstance(exc, NotOwner):  # not forwarded: see the module docstring
        log.warning(
            "%s %s: shard owned by %s (address %s), not forwarded",
            request.method,
            request.path,
            exc.owner,
            exc.address,
        )
        return error_response(
            503,
            [
                f"This thread is served by member {exc.owner}, which "
                "cannot be reached from here yet; retry shortly."
            ],
            {"Retry-After": "1"},
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        return _from_http_exception(exc, max_body_bytes)
    log.error("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, [INTERNAL_ERROR])

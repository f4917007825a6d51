"""The journal's DynamoDB client: one operation of DynamoDB's JSON API per call, retried.

The journal sees only :class:`DynamoDBClient` (``call(operation, params)`` with the API's own
operation names and request shapes) and :class:`Refused`, never what carries the request.
:class:`RetryingClient` implements it over a :class:`Transport`: :class:`.http_transport.
HttpTransport` (aiohttp, SigV4, the journal's default) or :class:`.sdk.SdkTransport`
(aiobotocore; benchmarks and tests). A transport raises :class:`ServiceError` for an error
answer and :class:`ConnectionFailure` when no (complete) answer came.

Throttling (ProvisionedThroughputExceeded, Throttling, RequestLimitExceeded), server errors
(InternalServerError, 5xx), connection errors and transactions cancelled only by contention are
retried with full-jitter exponential backoff (:class:`RetryPolicy`, bounded), then raise
JournalUnavailable. A missing table or rejected credentials raise JournalError with what to do;
every error names the operation and the table; secrets are never logged or shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ....application.ports import JournalError, JournalUnavailable
from .errors import CREDENTIAL_CODES, api_name, service_error
from .settings import DynamoDBSettings

__all__ = [
    "RETRYABLE_CODES",
    "Attempt",
    "ClientStats",
    "ConnectionFailure",
    "DynamoDBClient",
    "Refused",
    "RetryPolicy",
    "RetryingClient",
    "ServiceError",
    "Transport",
    "connect",
]

log = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionInProgressException",
        "TransactionConflictException",
        "LimitExceededException",
    }
)
# Retrying these cannot have been preceded by a write that took effect.
_REJECTED_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "LimitExceededException",
    }
)
# Cancellation reasons of a transaction that was refused as a whole and may simply be retried.
_CONTENTION = frozenset(
    {"None", "", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    max_attempts: int = 8
    base_delay: float = 0.025
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


@dataclass(slots=True)
class ClientStats:
    retries: int = 0  # tries repeated after a retryable failure (metrics and tests)
    calls: int = 0  # requests sent, retries included
    # Called once per request sent with (operation, outcome, seconds); outcome is "ok",
    # "throttled", "conditional_check_failed" or "error" (the metrics set it; None: no timing).
    observer: Callable[[str, str, float], None] | None = None


THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
    }
)


def outcome_of(exc: BaseException) -> str:
    """The metrics' ``outcome`` of a request that failed with `exc`."""
    if not isinstance(exc, ServiceError):
        return "error"
    if exc.code in THROTTLING_CODES:
        return "throttled"
    if exc.code == "ConditionalCheckFailedException":
        return "conditional_check_failed"
    if exc.code == "TransactionCanceledException":
        if "ConditionalCheckFailed" in exc.reasons:
            return "conditional_check_failed"
        if {"ThrottlingError", "ProvisionedThroughputExceeded"} & set(exc.reasons):
            return "throttled"
    return "error"


class Attempt:
    """What happened in one retried call: whether an earlier try may have taken effect."""

    __slots__ = ("ambiguous",)

    def __init__(self) -> None:
        self.ambiguous = False


class Refused(JournalError):
    """DynamoDB refused the request with a code the caller asked to handle itself (a failed
    condition, a cancelled transaction, an unknown operation). `reasons`: a cancelled
    transaction's reason per item, in order."""

    def __init__(self, code: str, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.reasons = list(reasons)


class ServiceError(Exception):
    """DynamoDB answered with an error: its code (``ConditionalCheckFailedException``; empty
    when the answer had none), message, HTTP status and, for a cancelled transaction, the
    reason code of each item."""

    def __init__(self, code: str, message: str, status: int, reasons: Sequence[str] = ()) -> None:
        super().__init__(f"{code or status}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.reasons = list(reasons)


class ConnectionFailure(Exception):
    """No complete answer (refused, reset, timed out, corrupt): the request may or may not have
    been applied."""


class Transport(Protocol):
    async def send(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One request, no retries: the answer, or ServiceError / ConnectionFailure (a
        JournalError when no credentials can be had)."""
        ...


class DynamoDBClient(Protocol):
    """What the journal needs from DynamoDB."""

    async def call(
        self,
        operation: str,
        params: Mapping[str, Any],
        *,
        table: str | None = None,
        refusals: Collection[str] = (),
        attempt: Attempt | None = None,
    ) -> dict[str, Any]:
        """Run `operation` (``"PutItem"``, ``"Query"``, ...) with the API's request `params`
        and return its response; retried as the module docstring says. An error code in
        `refusals` raises Refused; `attempt.ambiguous` becomes True when an earlier try may
        have been applied (connection lost after sending, 5xx). `table` (default: the request's
        TableName) names the table in errors."""
        ...


class RetryingClient:
    """DynamoDBClient over a Transport: the retries, refusals and errors of the module
    docstring."""

    def __init__(
        self,
        transport: Transport,
        settings: DynamoDBSettings,
        retry: RetryPolicy,
        stats: ClientStats,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.retry = retry
        self.stats = stats

    async def call(
        self,
        operation: str,
        params: Mapping[str, Any],
        *,
        table: str | None = None,
        refusals: Collection[str] = (),
        attempt: Attempt | None = None,
    ) -> dict[str, Any]:
        stats = self.stats
        send = self.transport.send if stats.observer is None else self._observed_send
        stats.calls += 1
        try:  # the first try, inline: the common case pays no loop
            return await send(operation, params)
        except (ServiceError, ConnectionFailure) as exc:
            last: Exception = exc
        policy = self.retry
        for n in range(1, policy.max_attempts):
            self._check_retryable(last, operation, params, table, refusals, attempt, n)
            stats.retries += 1
            await asyncio.sleep(policy.delay(n - 1))
            stats.calls += 1
            try:
                return await send(operation, params)
            except (ServiceError, ConnectionFailure) as exc:
                last = exc
        self._check_retryable(
            last, operation, params, table, refusals, attempt, policy.max_attempts
        )
        what = last.code if isinstance(last, ServiceError) and last.code else last
        raise JournalUnavailable(
            f"DynamoDB {api_name(operation)} on {table or params.get('TableName')} failed "
            f"after {policy.max_attempts} attempts ({_short(what)}) at "
            f"{self.settings.describe()}"
        )

    async def _observed_send(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        observer = self.stats.observer
        assert observer is not None
        started = time.perf_counter()
        try:
            response = await self.transport.send(operation, params)
        except (ServiceError, ConnectionFailure) as exc:
            observer(operation, outcome_of(exc), time.perf_counter() - started)
            raise
        observer(operation, "ok", time.perf_counter() - started)
        return response

    def _check_retryable(
        self,
        exc: Exception,
        operation: str,
        params: Mapping[str, Any],
        table: str | None,
        refusals: Collection[str],
        attempt: Attempt | None,
        tries: int,
    ) -> None:
        """Returns if `exc` may be retried; raises what the caller gets otherwise."""
        table = table or params.get("TableName")
        if isinstance(exc, ConnectionFailure):
            if attempt is not None:
                attempt.ambiguous = True
            log.debug("DynamoDB %s on %s: %s (try %d)", operation, table, exc, tries)
            return
        assert isinstance(exc, ServiceError)
        code = exc.code
        reasons = exc.reasons
        if code == "TransactionCanceledException" and reasons and _CONTENTION.issuperset(reasons):
            log.debug("DynamoDB %s on %s: cancelled %s", operation, table, reasons)
            return  # contention or throttling inside the transaction
        if code in refusals:
            error = service_error(code, exc.message, self.settings, table, operation)
            raise Refused(code, str(error), exc.reasons)
        if code in RETRYABLE_CODES or (exc.status >= 500 and code not in CREDENTIAL_CODES):
            if attempt is not None and code not in _REJECTED_CODES:
                attempt.ambiguous = True
            log.debug("DynamoDB %s on %s: %s (try %d)", operation, table, code, tries)
            return
        raise service_error(code, exc.message, self.settings, table, operation)


@contextlib.asynccontextmanager
async def connect(
    settings: DynamoDBSettings,
    *,
    retry: RetryPolicy,
    stats: ClientStats,
    max_pool_connections: int = 64,
    transport: str = "http",
) -> AsyncIterator[RetryingClient]:
    """The journal's client for `settings`, open for the block. `transport`: ``"http"``
    (:mod:`.http_transport`) or ``"sdk"`` (aiobotocore, :mod:`.sdk`)."""
    if transport == "sdk":
        from . import sdk

        async with sdk.open_client(settings, max_pool_connections=max_pool_connections) as raw:
            yield RetryingClient(sdk.SdkTransport(raw, settings), settings, retry, stats)
        return
    if transport != "http":
        raise ValueError(f"transport must be 'http' or 'sdk', not {transport!r}")
    from .credentials import credential_source
    from .http_transport import HttpTransport

    http = HttpTransport(
        settings, credential_source(settings), max_connections=max_pool_connections
    )
    await http.start()
    try:
        yield RetryingClient(http, settings, retry, stats)
    finally:
        await http.close()


def _short(what: object) -> str:
    text = str(what)
    return text if len(text) <= 200 else text[:200] + "..."

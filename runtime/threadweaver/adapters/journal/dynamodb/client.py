"""The journal's DynamoDB client: one operation of DynamoDB's JSON API per call, retried.

The journal sees only :class:`DynamoDBClient` (``call(operation, params)`` with the API's own
operation names and request shapes) and :class:`Refused`, never the SDK underneath, so the
client can be replaced without touching the journal. Today's implementation,
:class:`SdkClient`, runs on aiobotocore (:mod:`.sdk`).

Throttling (ProvisionedThroughputExceeded, Throttling, RequestLimitExceeded), server errors
(InternalServerError, 5xx), connection errors and transactions cancelled only by contention are
retried with full-jitter exponential backoff (:class:`RetryPolicy`, bounded), then raise
JournalUnavailable. A missing table or rejected credentials raise JournalError with what to do;
secrets are never logged or shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ....application.ports import JournalError, JournalUnavailable
from . import sdk
from .settings import DynamoDBSettings

__all__ = [
    "RETRYABLE_CODES",
    "Attempt",
    "ClientStats",
    "DynamoDBClient",
    "Refused",
    "RetryPolicy",
    "SdkClient",
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
_CONTENTION_REASONS = frozenset(
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


class SdkClient:
    """DynamoDBClient over an aiobotocore client (or anything with its methods, in tests)."""

    def __init__(
        self, sdk_client: Any, settings: DynamoDBSettings, retry: RetryPolicy, stats: ClientStats
    ) -> None:
        self._sdk = sdk_client
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
        from botocore import exceptions as bex

        method = getattr(self._sdk, _method_name(operation))
        table = table or params.get("TableName")
        policy = self.retry
        last: BaseException | None = None
        for n in range(policy.max_attempts):
            if n:
                self.stats.retries += 1
                await asyncio.sleep(policy.delay(n - 1))
            try:
                return await method(**params)
            except bex.ClientError as exc:
                code = sdk.error_code(exc)
                if code == "TransactionCanceledException":
                    reasons = _cancellation_reasons(exc)
                    if reasons and all(r in _CONTENTION_REASONS for r in reasons):
                        last = exc  # contention or throttling inside the transaction
                        log.debug("DynamoDB %s on %s: cancelled %s", operation, table, reasons)
                        continue
                if code in refusals:
                    error = sdk.map_client_error(exc, self.settings, table, operation)
                    raise Refused(code, str(error), _cancellation_reasons(exc)) from None
                if code in RETRYABLE_CODES or (
                    sdk.http_status(exc) >= 500 and code not in sdk.CREDENTIAL_CODES
                ):
                    last = exc
                    if attempt is not None and code not in _REJECTED_CODES:
                        attempt.ambiguous = True
                    log.debug("DynamoDB %s on %s: %s (try %d)", operation, table, code, n + 1)
                    continue
                raise sdk.map_client_error(exc, self.settings, table, operation) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
                    raise sdk.map_client_error(exc, self.settings, table, operation) from None
                if not _is_connection_error(exc):
                    raise
                last = exc
                if attempt is not None:
                    attempt.ambiguous = True
                log.debug(
                    "DynamoDB %s on %s: %s (try %d)", operation, table, type(exc).__name__, n + 1
                )
        what = sdk.error_code(last) or type(last).__name__ if last is not None else "?"
        raise JournalUnavailable(
            f"DynamoDB {sdk.api_name(operation)} on {table} failed after {policy.max_attempts} "
            f"attempts ({what}) at {self.settings.describe()}"
        )


@contextlib.asynccontextmanager
async def connect(
    settings: DynamoDBSettings,
    *,
    retry: RetryPolicy,
    stats: ClientStats,
    max_pool_connections: int = 64,
) -> AsyncIterator[DynamoDBClient]:
    """The journal's client for `settings`, open for the block."""
    async with sdk.open_client(settings, max_pool_connections=max_pool_connections) as client:
        yield SdkClient(client, settings, retry, stats)


def _method_name(operation: str) -> str:
    """PutItem -> put_item (the SDK's method); snake_case names pass through."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _cancellation_reasons(exc: BaseException) -> list[str]:
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons")
    if reasons:
        return [str(r.get("Code", "")) for r in reasons]
    # Older botocore versions: only the message carries them: "... [ConditionalCheckFailed, None]"
    message = sdk.error_message(exc)
    if "[" in message and message.endswith("]"):
        return [r.strip() for r in message[message.rindex("[") + 1 : -1].split(",")]
    return []


def _is_connection_error(exc: BaseException) -> bool:
    from botocore import exceptions as bex

    if isinstance(
        exc,
        (
            bex.EndpointConnectionError,
            bex.ConnectionClosedError,
            bex.ReadTimeoutError,
            bex.ConnectTimeoutError,
            bex.HTTPClientError,
        ),
    ):
        return True
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (asyncio.TimeoutError, ConnectionError, OSError))

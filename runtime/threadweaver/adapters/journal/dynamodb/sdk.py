"""The AWS SDK (aioboto3/aiobotocore) as this package uses it: one session per process, a
DynamoDB client with botocore's own retries off, and the JournalError a botocore failure becomes
(:mod:`.errors`).

Provisioning (:mod:`.tables`, which the operator imports) uses it; the journal's hot path does
not (:mod:`.http_transport`), except where :class:`SdkTransport` is chosen (benchmarks, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ....application.ports import JournalError
from .errors import (
    CREDENTIAL_CODES,
    api_name,
    no_credentials,
    reasons_from_message,
    service_error,
)
from .settings import DynamoDBSettings

__all__ = [
    "CREDENTIAL_CODES",
    "SdkTransport",
    "api_name",
    "error_code",
    "map_client_error",
    "open_client",
]

_SESSION: Any = None


@contextlib.asynccontextmanager
async def open_client(
    settings: DynamoDBSettings,
    *,
    max_pool_connections: int = 64,
    connect_timeout: float = 5.0,
    read_timeout: float = 20.0,
) -> AsyncIterator[Any]:
    """An aiobotocore DynamoDB client for `settings`, with botocore's own retries off (the
    callers retry with their own policy so that the behaviour is the same everywhere)."""
    import aioboto3
    from aiobotocore.config import AioConfig

    creds = settings.resolve_credentials()
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    if creds is not None:
        kwargs.update(
            aws_access_key_id=creds[0], aws_secret_access_key=creds[1], aws_session_token=creds[2]
        )
    config = AioConfig(
        retries={"total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        user_agent_extra="threadweaver",
    )
    global _SESSION
    if _SESSION is None:  # loading the service model is slow: one session per process
        _SESSION = aioboto3.Session()
    async with _SESSION.client("dynamodb", config=config, **kwargs) as client:
        yield client


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", ""))
    return str(exc)


def http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def cancellation_reasons(exc: BaseException) -> list[str]:
    """A cancelled transaction's reason codes, in item order."""
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons")
    if reasons:
        return [str(r.get("Code", "")) for r in reasons]
    return reasons_from_message(error_message(exc))


def map_client_error(
    exc: BaseException, settings: DynamoDBSettings, table: str | None, op: str
) -> JournalError:
    """The JournalError a non-retryable DynamoDB failure becomes (never with secrets)."""
    from botocore import exceptions as bex

    if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
        return no_credentials(settings)
    code = error_code(exc)
    if not code:
        return JournalError(f"DynamoDB {api_name(op)} failed: {type(exc).__name__}: {exc}")
    return service_error(code, error_message(exc), settings, table, op)


def is_connection_error(exc: BaseException) -> bool:
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
    import aiohttp

    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError))


class SdkTransport:
    """The journal client's transport (:class:`.client.Transport`) over an aiobotocore client
    (or anything with its methods, in tests): the SDK's errors become the client's."""

    def __init__(self, sdk_client: Any, settings: DynamoDBSettings) -> None:
        self._sdk = sdk_client
        self._settings = settings
        self._methods: dict[str, Any] = {}

    async def send(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        from botocore import exceptions as bex

        from .client import ConnectionFailure, ServiceError

        method = self._methods.get(operation)
        if method is None:
            method = self._methods[operation] = getattr(self._sdk, _method_name(operation))
        try:
            return dict(await method(**params))
        except bex.ClientError as exc:
            raise ServiceError(
                error_code(exc), error_message(exc), http_status(exc), cancellation_reasons(exc)
            ) from None
        except asyncio.CancelledError:
            raise
        except (bex.NoCredentialsError, bex.PartialCredentialsError):
            raise no_credentials(self._settings) from None
        except Exception as exc:
            if is_connection_error(exc):
                raise ConnectionFailure(f"{type(exc).__name__}: {exc}") from exc
            raise


def _method_name(operation: str) -> str:
    """PutItem -> put_item (the SDK's method); snake_case names pass through."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")

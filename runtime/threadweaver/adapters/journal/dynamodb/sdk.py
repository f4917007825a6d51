"""The AWS SDK (aioboto3/aiobotocore) as this package uses it: one session per process, a
DynamoDB client with botocore's own retries off, and the JournalError a botocore failure becomes.

Shared by provisioning (:mod:`.tables`, which the operator imports) and today's journal client
(:mod:`.client`); the journal itself never touches botocore.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ....application.ports import JournalError
from .settings import DynamoDBSettings

__all__ = ["CREDENTIAL_CODES", "api_name", "error_code", "map_client_error", "open_client"]

CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)

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


def api_name(op: str) -> str:
    """put_item -> PutItem (the name IAM and the docs use)."""
    return "".join(part.capitalize() for part in op.split("_")) if "_" in op else op


def map_client_error(
    exc: BaseException, settings: DynamoDBSettings, table: str | None, op: str
) -> JournalError:
    """The JournalError a non-retryable DynamoDB failure becomes (never with secrets)."""
    from botocore import exceptions as bex

    if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
        return JournalError(
            f"no usable AWS credentials for DynamoDB at {settings.describe()}: set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, mount a credentials Secret "
            "(credentials-file) or give the pod an IAM role"
        )
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        name = table or f"{settings.table_prefix}-*"
        return JournalError(
            f"DynamoDB table {name} does not exist at {settings.describe()}: run "
            "`threadweaver create-tables` or let the operator create it"
        )
    if code in CREDENTIAL_CODES:
        return JournalError(
            f"DynamoDB at {settings.describe()} rejected the request ({code}: "
            f"{error_message(exc)}): check the credentials (access key id and secret) or the "
            f"IAM permissions for dynamodb:{api_name(op)}"
        )
    op = api_name(op)
    if code:
        return JournalError(
            f"DynamoDB {op} failed on {table or settings.table_prefix}: "
            f"{code}: {error_message(exc)}"
        )
    return JournalError(f"DynamoDB {op} failed: {type(exc).__name__}: {exc}")

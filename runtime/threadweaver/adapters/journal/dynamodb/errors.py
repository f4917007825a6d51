"""The JournalError a DynamoDB failure becomes, whichever client met it: messages that name the
table, the operation and where the server is, and never a secret. Used by the journal's client
(:mod:`.client`) and by provisioning (:mod:`.sdk`, :mod:`.tables`)."""

from __future__ import annotations

from ....application.ports import JournalError
from .settings import DynamoDBSettings

__all__ = [
    "CREDENTIAL_CODES",
    "api_name",
    "credentials_error",
    "no_credentials",
    "reasons_from_message",
    "service_error",
]

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


def api_name(op: str) -> str:
    """put_item -> PutItem (the name IAM and the docs use)."""
    return "".join(part.capitalize() for part in op.split("_")) if "_" in op else op


def no_credentials(settings: DynamoDBSettings) -> JournalError:
    return JournalError(
        f"no usable AWS credentials for DynamoDB at {settings.describe()}: set "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, mount a credentials Secret "
        "(credentials-file) or give the pod an IAM role"
    )


def credentials_error(settings: DynamoDBSettings, source: str, detail: str) -> JournalError:
    """Obtaining or refreshing credentials from `source` (web identity, container, instance
    metadata, a profile) failed."""
    return JournalError(
        f"cannot obtain AWS credentials for DynamoDB at {settings.describe()} from {source}: "
        f"{detail}"
    )


def service_error(
    code: str, message: str, settings: DynamoDBSettings, table: str | None, op: str
) -> JournalError:
    """The JournalError of a non-retryable error answer (`code` from DynamoDB)."""
    if code == "ResourceNotFoundException":
        name = table or f"{settings.table_prefix}-*"
        return JournalError(
            f"DynamoDB table {name} does not exist at {settings.describe()}: run "
            "`threadweaver create-tables` or let the operator create it"
        )
    if code in CREDENTIAL_CODES:
        return JournalError(
            f"DynamoDB at {settings.describe()} rejected the request ({code}: {message}): check "
            "the credentials (access key id and secret) or the IAM permissions for "
            f"dynamodb:{api_name(op)} on {table or settings.table_prefix + '-*'}"
        )
    if code:
        return JournalError(
            f"DynamoDB {api_name(op)} failed on {table or settings.table_prefix}: {code}: {message}"
        )
    return JournalError(
        f"DynamoDB {api_name(op)} failed on {table or settings.table_prefix}: {message}"
    )


def reasons_from_message(message: str) -> list[str]:
    """A cancelled transaction's reasons where only the message has them: "... [None, X]"."""
    if "[" in message and message.endswith("]"):
        return [r.strip() for r in message[message.rindex("[") + 1 : -1].split(",")]
    return []

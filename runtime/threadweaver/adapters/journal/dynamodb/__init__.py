"""The DynamoDB journal (production).

Modules: :mod:`.settings` (where the tables are, credentials), :mod:`.tables` (layout and
provisioning), :mod:`.sdk` (the AWS SDK provisioning uses), :mod:`.errors` (the JournalErrors
of DynamoDB failures), :mod:`.client` (the journal's calls, with retries) over
:mod:`.http_transport` (:mod:`.http1` requests, :mod:`.sigv4` signatures, :mod:`.credentials`
and their refresh), :mod:`.codec` (items <-> events), :mod:`.heads` (what the journal knows of each pid's
stream), :mod:`.cursor` (a shard's stream from the index), :mod:`.startup` (the checks at start),
:mod:`.journal` (the Journal port).

The names below are imported from their modules on first use, so that importing
``dynamodb.settings`` or ``dynamodb.tables`` (what the operator does) loads neither the journal
nor its client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DynamoDBSettings": "settings",
    "BILLING_MODES": "tables",
    "SHARD_INDEX": "tables",
    "create_tables": "tables",
    "delete_tables": "tables",
    "describe_tables": "tables",
    "map_client_error": "sdk",
    "open_client": "sdk",
    "RetryPolicy": "client",
    "META_PID": "codec",
    "DEFAULT_OFFSET_SLACK_US": "journal",
    "MAX_EVENTS_PER_APPEND": "journal",
    "DynamoDBJournal": "journal",
}

__all__ = [
    "BILLING_MODES",
    "DEFAULT_OFFSET_SLACK_US",
    "MAX_EVENTS_PER_APPEND",
    "META_PID",
    "SHARD_INDEX",
    "DynamoDBJournal",
    "DynamoDBSettings",
    "RetryPolicy",
    "create_tables",
    "delete_tables",
    "describe_tables",
    "map_client_error",
    "open_client",
]

if TYPE_CHECKING:
    from .client import RetryPolicy
    from .codec import META_PID
    from .journal import DEFAULT_OFFSET_SLACK_US, MAX_EVENTS_PER_APPEND, DynamoDBJournal
    from .sdk import map_client_error, open_client
    from .settings import DynamoDBSettings
    from .tables import BILLING_MODES, SHARD_INDEX, create_tables, delete_tables, describe_tables


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

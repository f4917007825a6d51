"""DynamoDB requests counted through botocore's event hooks, outside the journal's code.

The journal's aiobotocore client emits ``before-call``, ``after-call`` and ``after-call-error``
for every request it sends; its own retries are off (the journal retries itself), so each
event is one attempt. The handlers classify the answer: throttled (the throttling codes and a
transaction cancelled for throttling), conditional check failed (a conditional write, or a
transaction cancelled for a condition), any other error, or ok.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .recorders import DynamoDBRecorder

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
    }
)
_START = "threadweaver_started"
_OPERATION = "threadweaver_operation"


def classify(status: int, parsed: Any) -> str:
    """The ``outcome`` label of one answered request."""
    if status < 300:
        return "ok"
    error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
    code = error.get("Code", "")
    if code in THROTTLING_CODES:
        return "throttled"
    if code == "ConditionalCheckFailedException":
        return "conditional_check_failed"
    if code == "TransactionCanceledException":
        reasons = {r.get("Code") for r in parsed.get("CancellationReasons") or []}
        if "ConditionalCheckFailed" in reasons:
            return "conditional_check_failed"
        if "ThrottlingError" in reasons or "ProvisionedThroughputExceeded" in reasons:
            return "throttled"
    return "error"


class DynamoDBHooks:
    """The three handlers, registered on one client's event system by :meth:`attach`."""

    def __init__(self, recorder: DynamoDBRecorder) -> None:
        self.recorder = recorder

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-call.dynamodb", self.before_call)
        events.register("after-call.dynamodb", self.after_call)
        events.register("after-call-error.dynamodb", self.after_call_error)

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        context[_OPERATION] = model.name
        context[_START] = time.perf_counter()

    def after_call(
        self, http_response: Any, parsed: Any, model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        self.recorder.done(
            model.name, classify(http_response.status_code, parsed), _elapsed(context)
        )

    def after_call_error(self, context: dict[str, Any], **_: Any) -> None:
        # connection errors, time-outs: no answer to classify
        self.recorder.done(context.get(_OPERATION, "unknown"), "error", _elapsed(context))


def _elapsed(context: dict[str, Any]) -> float | None:
    started = context.get(_START)
    return None if started is None else time.perf_counter() - started


def attach_to_journal(journal: Any, hooks: DynamoDBHooks) -> bool:
    """Register the hooks on a started DynamoDB journal's client; False if it has none."""
    client = getattr(journal, "_client", None) or getattr(journal, "client", None)
    client = getattr(client, "_sdk", client)  # the journal's SdkClient wraps the aiobotocore one
    if client is None or not hasattr(client, "meta"):
        log.warning("DynamoDB journal without a client: its requests are not counted")
        return False
    hooks.attach(client)
    return True

"""A scripted fake of the SDK's DynamoDB client (just enough for appends, reads and snapshots),
under the journal's real client code, for the unit tests of the DynamoDB journal."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
from threadweaver.adapters.journal.dynamodb.client import RetryingClient, RetryPolicy
from threadweaver.adapters.journal.dynamodb.sdk import SdkTransport
from threadweaver.application.ports import NewEvent

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
FAST = RetryPolicy(max_attempts=5, base_delay=0.0001, max_delay=0.001)


def client_error(
    code: str, op: str = "PutItem", status: int = 400, message: str = "boom", **extra: Any
) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
            **extra,
        },
        op,
    )


class FakeClient:
    """Just enough DynamoDB for appends, reads and snapshots: the journal table's items
    (`items`) and the snapshot table's (`snapshots`, by pid); `faults[op]` is a list of
    exceptions raised by the next calls of `op` (an entry ("after", exc) applies the call, then
    raises: a lost response)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int], dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}
        self.tokens: list[str] = []  # transactions applied
        self.seen_tokens: list[str] = []  # every TransactWriteItems call

    async def _fault(self, op: str, apply: Any) -> Any:
        self.calls[op] = self.calls.get(op, 0) + 1
        queue = self.faults.get(op) or []
        if queue:
            fault = queue.pop(0)
            if isinstance(fault, tuple) and fault[0] == "after":
                apply()
                raise fault[1]
            raise fault
        return apply()

    @staticmethod
    def _key(item: dict[str, Any]) -> tuple[str, int]:
        return item["pid"]["S"], int(item["seq"]["N"])

    async def put_item(self, **kw: Any) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            if kw["TableName"].endswith("-snapshot"):
                pid, old = kw["Item"]["pid"]["S"], self.snapshots.get(kw["Item"]["pid"]["S"])
                if old and int(old["seq"]["N"]) >= int(kw["Item"]["seq"]["N"]):
                    raise client_error("ConditionalCheckFailedException")
                self.snapshots[pid] = kw["Item"]
                return {}
            key = self._key(kw["Item"])
            if "ConditionExpression" in kw and key in self.items:
                raise client_error("ConditionalCheckFailedException")
            self.items[key] = kw["Item"]
            return {}

        return await self._fault("put_item", apply)

    async def get_item(self, **kw: Any) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            if kw["TableName"].endswith("-snapshot"):
                item = self.snapshots.get(kw["Key"]["pid"]["S"])
                return {"Item": item} if item else {}
            item = self.items.get(self._key(kw["Key"]))
            return {"Item": item} if item else {}

        return await self._fault("get_item", apply)

    async def query(self, **kw: Any) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            pid = kw["ExpressionAttributeValues"][":p"]["S"]
            items = sorted(
                (v for (p, _), v in self.items.items() if p == pid),
                key=lambda i: int(i["seq"]["N"]),
            )
            condition = kw["KeyConditionExpression"]
            if ":s" in kw["ExpressionAttributeValues"]:
                bound = int(kw["ExpressionAttributeValues"][":s"]["N"])
                below = "seq < :s" in condition
                items = [i for i in items if (int(i["seq"]["N"]) < bound) == below]
            if kw.get("ScanIndexForward") is False:
                items.reverse()
            if "Limit" in kw:
                items = items[: kw["Limit"]]
            return {"Items": items}

        return await self._fault("query", apply)

    async def transact_write_items(self, **kw: Any) -> dict[str, Any]:
        self.seen_tokens.append(kw["ClientRequestToken"])

        def apply() -> dict[str, Any]:
            token = kw["ClientRequestToken"]
            if token in self.tokens:  # DynamoDB: a repeated token is the same transaction
                return {}
            self.tokens.append(token)
            puts = [t["Put"]["Item"] for t in kw["TransactItems"]]
            reasons = [
                {"Code": "ConditionalCheckFailed" if self._key(i) in self.items else "None"}
                for i in puts
            ]
            if any(r["Code"] != "None" for r in reasons):
                raise client_error(
                    "TransactionCanceledException",
                    "TransactWriteItems",
                    CancellationReasons=reasons,
                )
            for i in puts:
                self.items[self._key(i)] = i
            return {}

        return await self._fault("transact_write_items", apply)


def make_journal(
    transactions: bool = True, policy: RetryPolicy = FAST, fake: FakeClient | None = None
) -> tuple[DynamoDBJournal, FakeClient]:
    """A journal over `fake` (a new FakeClient by default: another journal's, to play a second
    writer on the same table)."""
    settings = DynamoDBSettings(
        endpoint_url="http://127.0.0.1:9",
        table_prefix="unit",
        access_key_id="AKIDUNIT",
        secret_access_key=SECRET,
    )
    journal = DynamoDBJournal(settings, shards=8, transactions=transactions, retry=policy)
    fake = fake or FakeClient()
    # what start() would have opened, over the scripted SDK client
    journal._client = RetryingClient(
        SdkTransport(fake, settings), settings, policy, journal.client_stats
    )
    return journal, fake


def ev(n: int = 0) -> NewEvent:
    return NewEvent("MessagesAdded", {"n": n})

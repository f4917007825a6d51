"""The production journal: Amazon DynamoDB (or any server speaking its API, e.g. dynalite).

Tables (created by :mod:`.dynamodb_tables`, ``threadweaver create-tables`` or the operator)
-----------------------------------------------------------------------------------------
``<prefix>-journal``  HASH ``pid`` (S), RANGE ``seq`` (N). One item per event with the attributes
    ``shard`` (N), ``ts`` (N, epoch microseconds), ``type`` (S), ``payload`` (S, JSON) and
    ``writer`` (S, omitted when empty). GSI ``shard_ts``: HASH ``shard`` (N), RANGE ``ts`` (N),
    projecting ALL, so a projection reads "events of shard s after offset t" with one Query per
    shard and never a Scan (the slice index of Akka Persistence DynamoDB).
``<prefix>-snapshot`` HASH ``pid`` (S): ``seq`` (N), ``ts`` (N), ``state`` (S, JSON). A save keeps
    the snapshot with the highest seq (conditional put), like the SQLite journal.

One more item lives in the journal table: ``pid = "__threadweaver_meta__", seq = 0`` records the
shard count the table was created for (it has no ``shard``/``ts``, so it is not in the index).
Starting a journal with another shard count fails, as with SQLite.

Appends and the single-writer guarantee (DESIGN §2)
---------------------------------------------------
All events of one append get one ``ts``: the write time, made strictly increasing within this
process (so one writer never produces equal offsets) and, when this instance has seen the pid,
above that pid's last ``ts``. ``StoredEvent.offset`` is ``ts``.

*Transactional mode* (AWS DynamoDB, DynamoDB Local, LocalStack): a one-event append is a
``PutItem`` with ``attribute_not_exists(pid)``; a multi-event append is one
``TransactWriteItems`` with one such conditional ``Put`` per event, so the condition is checked
on every sequence number and nothing partial is ever written. A retried transaction carries the
same ``ClientRequestToken``, which makes it idempotent.

*Batch-item mode* (servers without transactions, detected once at ``start()``: dynalite answers
``UnknownOperationException``). Atomicity without transactions needs every append to be ONE
item write, so a multi-event append is written as one *batch item* keyed by its first sequence
number: ``(pid, seq=first)`` with ``last_seq`` (N) and ``batch`` (S, a JSON list of
``[type, payload]``) instead of ``type``/``payload``. Readers expand it into its events (all
with the item's ``shard``/``ts``/``writer``). A put only checks its own key, so overlap with
other sequence numbers is excluded by a protocol, applied to every append in this mode (one event
or many):

1. *precheck*: a strongly consistent Query for the pid's newest item gives the highest seq ``h``.
   ``h > expected_seq`` -> ConcurrencyConflict(pid, expected_seq + 1) (that seq exists);
   ``h < expected_seq`` -> JournalError (the append would leave a gap, which this mode cannot
   allow).
2. conditional put of the (single or batch) item at key ``expected_seq + 1`` with
   ``attribute_not_exists(pid)``; failure -> ConcurrencyConflict.

Why this is sound: items are never updated or deleted, so the pid's items always partition
``1..h`` into consecutive ranges, each item keyed by the first seq of its range ("boundaries"
are permanent). A put at key ``f`` succeeds only if ``f - 1`` was the highest seq (a boundary) at
its precheck and key ``f`` does not exist at the put. If meanwhile another append extended the
pid, it started exactly at the boundary ``f - 1`` too, i.e. it owns key ``f`` and this put fails.
So two successful appends never cover the same seq, and a seq never appears without all seqs
below it. The cost is one extra (0.5 RCU) query per append, only on such servers.

Both modes read both item shapes, so a table written in batch-item mode stays readable
everywhere. (Transactional mode writes no batch items and does not precheck; writing into a
table that holds batch items is still safe for callers that pass the highest seq they read,
which is what the entity layer does.) An append holds at most :data:`MAX_EVENTS_PER_APPEND`
events (the TransactWriteItems limit), and an item at most 400 KB.

Offsets and ``read_shards``
---------------------------
``read_shards`` implements the port exactly: per shard a Query on the index with
``shard = :s AND ts > :after`` (``after.get(shard, 0)``), paginated with LastEvaluatedKey, merged
across shards in ``(offset, pid, seq)`` order. Offsets are write times from several writers and
the index is eventually consistent, so an event can become visible *behind* an offset already
read: ``offset_slack`` (default 10 s, in microseconds) is how far; the projection re-reads that
window when idle (``application.projector``) and drops what it applied before by seq.
Events that share an offset in a shard (one append, or a same-microsecond collision between
writers) are never split across two results, because a caller resumes *after* an offset: a
result is cut before such a group, and only a single group larger than ``limit`` is returned
whole (more than ``limit`` events).

Errors
------
Throttling (ProvisionedThroughputExceeded, Throttling, RequestLimitExceeded), server errors
(InternalServerError, 5xx) and connection errors are retried with full-jitter exponential
backoff (:class:`RetryPolicy`, bounded), then raise JournalUnavailable. A write whose outcome was
unknown (connection dropped) and whose retry hits its own condition is recognised as ours (same
``ts``/``writer``/content) instead of reported as a conflict. A missing table or rejected
credentials raise JournalError with what to do; secrets are never logged or shown in reprs.
"""

from __future__ import annotations

import asyncio
import collections
import configparser
import contextlib
import heapq
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from ...application.ports import (
    AppendListener,
    ConcurrencyConflict,
    JournalError,
    JournalUnavailable,
    NewEvent,
    Snapshot,
    StoredEvent,
)
from ...shards.hashing import DEFAULT_SHARDS, shard_of
from .listeners import AppendListeners

__all__ = [
    "DEFAULT_OFFSET_SLACK_US",
    "MAX_EVENTS_PER_APPEND",
    "META_PID",
    "SHARD_INDEX",
    "DynamoDBJournal",
    "DynamoDBSettings",
    "RetryPolicy",
    "map_client_error",
    "open_client",
]

log = logging.getLogger(__name__)

SHARD_INDEX = "shard_ts"
MAX_EVENTS_PER_APPEND = 100
DEFAULT_OFFSET_SLACK_US = 10_000_000
META_PID = "__threadweaver_meta__"
FORMAT_VERSION = 1
_LOCAL_DUMMY_CREDENTIALS = ("threadweaver-local", "threadweaver-local")

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


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamoDBSettings:
    """Where the journal lives and how to authenticate.

    ``endpoint_url`` None means AWS itself (the regional endpoint). Credentials, first found wins:
    ``access_key_id``/``secret_access_key``; ``credentials_file`` (a directory such as a mounted
    Kubernetes Secret with files ``access-key-id`` and ``secret-access-key``, or an AWS shared
    credentials file, profile ``AWS_PROFILE`` or ``default``); then botocore's default chain
    (environment, web identity / IRSA, instance role). A custom endpoint without any credentials
    gets dummy ones (local servers check none).
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    table_prefix: str = "threadweaver"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    credentials_file: str | None = None
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None

    def __post_init__(self) -> None:
        prefix = self.table_prefix
        if not prefix or len(prefix) > 200 or not all(c.isalnum() or c in "_.-" for c in prefix):
            raise ValueError(f"table prefix {prefix!r}: 1 to 200 characters of a-z A-Z 0-9 _ . -")
        if not self.region:
            raise ValueError("region must not be empty")

    @property
    def journal_table(self) -> str:
        return f"{self.table_prefix}-journal"

    @property
    def snapshot_table(self) -> str:
        return f"{self.table_prefix}-snapshot"

    @property
    def tables(self) -> list[str]:
        return [self.journal_table, self.snapshot_table]

    def __repr__(self) -> str:  # never shows secrets
        creds = (
            "explicit"
            if self.access_key_id
            else f"file {self.credentials_file}"
            if self.credentials_file
            else "default chain"
        )
        return (
            f"DynamoDBSettings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"table_prefix={self.table_prefix!r}, credentials={creds})"
        )

    def describe(self) -> str:
        """For logs and errors: where, never who."""
        return f"{self.endpoint_url or 'AWS'} ({self.region}), tables {self.table_prefix}-*"

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> DynamoDBSettings:
        """``dynamodb://HOST:PORT?region=R&table-prefix=P`` (no host: AWS).

        Query parameters: ``region`` (else AWS_REGION, AWS_DEFAULT_REGION, us-east-1),
        ``table-prefix`` (default ``threadweaver``), ``tls=true`` (https to HOST),
        ``credentials-file`` (directory or shared credentials file; else
        AWS_SHARED_CREDENTIALS_FILE), ``profile``. Keys from AWS_ACCESS_KEY_ID /
        AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) are used unless a credentials file is named
        in the URL.
        """
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        if parts.scheme != "dynamodb":
            raise ValueError(f"not a dynamodb:// URL: {url!r}")
        query = {k.replace("_", "-"): v[-1] for k, v in parse_qs(parts.query).items()}
        allowed = {"region", "table-prefix", "tls", "credentials-file", "profile"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise ValueError(
                f"unknown dynamodb URL parameter(s) {', '.join(unknown)};"
                f" allowed: {', '.join(sorted(allowed))}"
            )
        if parts.username or parts.password:
            raise ValueError(
                "credentials do not belong in the dynamodb URL: use AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY or a credentials file"
            )
        tls = query.get("tls", "false").lower() in ("1", "true", "yes", "on")
        endpoint = None
        if parts.hostname:
            try:
                port = parts.port
            except ValueError as exc:
                raise ValueError(f"invalid port in {url!r}") from exc
            host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            endpoint = f"{'https' if tls else 'http'}://{host}" + (f":{port}" if port else "")
        region = (
            query.get("region")
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        creds_file = query.get("credentials-file") or env.get("AWS_SHARED_CREDENTIALS_FILE") or None
        key_id = secret = token = None
        if (
            "credentials-file" not in query
            and env.get("AWS_ACCESS_KEY_ID")
            and env.get("AWS_SECRET_ACCESS_KEY")
        ):
            key_id, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            token = env.get("AWS_SESSION_TOKEN") or None
        return cls(
            endpoint_url=endpoint,
            region=region,
            table_prefix=query.get("table-prefix") or "threadweaver",
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token,
            credentials_file=creds_file,
            profile=query.get("profile") or env.get("AWS_PROFILE") or None,
        )

    def resolve_credentials(self) -> tuple[str, str, str | None] | None:
        """(key id, secret, session token) to use, or None for botocore's default chain.
        Files are read on every call, so a rotated Secret is picked up by a new client."""
        if self.access_key_id and self.secret_access_key:
            return self.access_key_id, self.secret_access_key, self.session_token
        if self.credentials_file:
            found = _read_credentials_file(Path(self.credentials_file), self.profile)
            if found is not None:
                return found
        if self.endpoint_url:
            return (*_LOCAL_DUMMY_CREDENTIALS, None) if not _env_has_credentials() else None
        return None


def _env_has_credentials() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))


_DIR_KEY_FILES = (
    ("access-key-id", "secret-access-key", "session-token"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"),
    ("accessKeyId", "secretAccessKey", "sessionToken"),
)


def _read_credentials_file(path: Path, profile: str | None) -> tuple[str, str, str | None] | None:
    try:
        if path.is_dir():
            for id_name, secret_name, token_name in _DIR_KEY_FILES:
                if (path / id_name).is_file() and (path / secret_name).is_file():
                    token_file = path / token_name
                    token = token_file.read_text().strip() if token_file.is_file() else None
                    return (
                        (path / id_name).read_text().strip(),
                        (path / secret_name).read_text().strip(),
                        token or None,
                    )
            raise JournalError(
                f"credentials directory {path} has no access-key-id and secret-access-key files"
            )
        if path.is_file():
            parser = configparser.ConfigParser()
            parser.read(path)
            section = profile or "default"
            for name in (section, f"profile {section}"):
                if parser.has_section(name):
                    sec = parser[name]
                    if sec.get("aws_access_key_id") and sec.get("aws_secret_access_key"):
                        return (
                            sec["aws_access_key_id"].strip(),
                            sec["aws_secret_access_key"].strip(),
                            (sec.get("aws_session_token") or "").strip() or None,
                        )
            raise JournalError(f"credentials file {path} has no keys for profile {section!r}")
    except OSError as exc:
        raise JournalError(f"cannot read credentials file {path}: {exc.strerror}") from None
    raise JournalError(f"credentials file {path} does not exist")


# ---------------------------------------------------------------------------------------------
# Client and error handling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    max_attempts: int = 8
    base_delay: float = 0.025
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


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


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", ""))
    return str(exc)


def _http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


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


def _api_name(op: str) -> str:
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
    code = _error_code(exc)
    if code == "ResourceNotFoundException":
        name = table or f"{settings.table_prefix}-*"
        return JournalError(
            f"DynamoDB table {name} does not exist at {settings.describe()}: run "
            "`threadweaver create-tables` or let the operator create it"
        )
    if code in CREDENTIAL_CODES:
        return JournalError(
            f"DynamoDB at {settings.describe()} rejected the request ({code}: "
            f"{_error_message(exc)}): check the credentials (access key id and secret) or the "
            f"IAM permissions for dynamodb:{_api_name(op)}"
        )
    op = _api_name(op)
    if code:
        return JournalError(
            f"DynamoDB {op} failed on {table or settings.table_prefix}: "
            f"{code}: {_error_message(exc)}"
        )
    return JournalError(f"DynamoDB {op} failed: {type(exc).__name__}: {exc}")


class _Attempt:
    """What happened in one retried call: whether an earlier try may have taken effect."""

    __slots__ = ("ambiguous",)

    def __init__(self) -> None:
        self.ambiguous = False


# ---------------------------------------------------------------------------------------------
# Item conversion
# ---------------------------------------------------------------------------------------------


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _item_events(item: Mapping[str, Any]) -> list[StoredEvent]:
    """The events stored in one journal item (a single event or a batch item)."""
    pid = item["pid"]["S"]
    seq = int(item["seq"]["N"])
    shard = int(item["shard"]["N"])
    ts = int(item["ts"]["N"])
    writer = item.get("writer", {}).get("S", "")
    if "batch" in item:
        return [
            StoredEvent(
                pid=pid,
                seq=seq + i,
                shard=shard,
                type=t,
                payload=p,
                ts=ts,
                offset=ts,
                writer=writer,
            )
            for i, (t, p) in enumerate(orjson.loads(item["batch"]["S"]))
        ]
    return [
        StoredEvent(
            pid=pid,
            seq=seq,
            shard=shard,
            type=item["type"]["S"],
            payload=orjson.loads(item["payload"]["S"]),
            ts=ts,
            offset=ts,
            writer=writer,
        )
    ]


def _item_last_seq(item: Mapping[str, Any]) -> int:
    if "last_seq" in item:
        return int(item["last_seq"]["N"])
    return int(item["seq"]["N"])


def _event_sort_key(ev: StoredEvent) -> tuple[int, str, int]:
    return ev.offset, ev.pid, ev.seq


# ---------------------------------------------------------------------------------------------
# The journal
# ---------------------------------------------------------------------------------------------


class DynamoDBJournal:
    """The Journal port on DynamoDB; see the module docstring for the layout and protocols."""

    def __init__(
        self,
        settings: DynamoDBSettings,
        *,
        shards: int = DEFAULT_SHARDS,
        offset_slack: int = DEFAULT_OFFSET_SLACK_US,
        transactions: bool | None = None,
        retry: RetryPolicy | None = None,
        query_concurrency: int = 32,
        max_pool_connections: int = 64,
        pid_ts_cache: int = 65536,
        read_page_size: int | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.settings = settings
        self.shards = shards
        self.offset_slack = offset_slack
        self.retry = retry or RetryPolicy()
        #: None: detect at start(); True/False: force (tests, servers known to lack them)
        self.transactions = transactions
        self._query_concurrency = max(1, query_concurrency)
        self._max_pool = max_pool_connections
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._listeners = AppendListeners()
        self._last_ts = 0
        self._pid_ts: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._pid_ts_cap = pid_ts_cache
        self._read_page_size = read_page_size  # Query Limit of read(); None: 1 MB pages
        self._started = False
        self._closed = False
        # counters for metrics and tests
        self.retries = 0
        self.appends = 0

    @property
    def journal_table(self) -> str:
        return self.settings.journal_table

    @property
    def snapshot_table(self) -> str:
        return self.settings.snapshot_table

    def __repr__(self) -> str:
        return f"DynamoDBJournal({self.settings!r}, shards={self.shards})"

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the client, check both tables exist (clear error otherwise), detect whether the
        server supports transactions, and check the table's shard count."""
        if self._started:
            return
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                open_client(self.settings, max_pool_connections=self._max_pool)
            )
            self._stack = stack
            await self._check_tables()
            await self._init_meta()
        except BaseException:
            self._client = None
            self._stack = None
            await stack.aclose()
            raise
        self._started = True
        log.info(
            "DynamoDB journal on %s (%s, %d shards)",
            self.settings.describe(),
            "transactions" if self.transactions else "batch items",
            self.shards,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _require_client(self) -> Any:
        if self._client is None:
            raise JournalError(
                "journal is not running (start() it first)"
                if not self._closed
                else "journal is closed"
            )
        return self._client

    async def _check_tables(self, wait_active: float = 60.0) -> None:
        """Both tables exist (a clear error otherwise), the journal has the shard index, and
        tables still being created are waited for (bounded)."""
        deadline = time.monotonic() + wait_active
        for name in (self.journal_table, self.snapshot_table):
            while True:
                desc = (await self._call("describe_table", name, TableName=name))["Table"]
                if desc.get("TableStatus") != "CREATING" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            if name == self.journal_table:
                indexes = {i["IndexName"] for i in desc.get("GlobalSecondaryIndexes", [])}
                if SHARD_INDEX not in indexes:
                    raise JournalError(
                        f"DynamoDB table {name} has no {SHARD_INDEX} index: it was not created "
                        "by threadweaver (run `threadweaver create-tables` with a new table "
                        "prefix)"
                    )

    async def _init_meta(self) -> None:
        """Record the shard count (first start) and learn whether transactions work."""
        key = {"pid": _s(META_PID), "seq": _n(0)}
        item = {
            **key,
            "shards": _n(self.shards),
            "format": _n(FORMAT_VERSION),
            "created": _n(time.time_ns() // 1000),
        }
        put = {
            "TableName": self.journal_table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pid)",
        }
        from botocore.exceptions import ClientError

        if self.transactions is not False:
            try:
                await self._call(
                    "transact_write_items",
                    self.journal_table,
                    TransactItems=[{"Put": put}],
                    ClientRequestToken=str(uuid.uuid4()),
                    _passthrough=("TransactionCanceledException", "UnknownOperationException"),
                )
                self.transactions = True
            except ClientError as exc:
                code = _error_code(exc)
                if code == "UnknownOperationException":
                    if self.transactions:
                        raise JournalError(
                            f"DynamoDB at {self.settings.describe()} does not "
                            "support TransactWriteItems"
                        ) from None
                    log.info(
                        "DynamoDB at %s has no TransactWriteItems: multi-event appends "
                        "use batch items",
                        self.settings.describe(),
                    )
                    self.transactions = False
                else:  # TransactionCanceledException: the meta item exists already
                    self.transactions = True
        if self.transactions is False:
            try:
                await self._call(
                    "put_item",
                    self.journal_table,
                    **put,
                    _passthrough=("ConditionalCheckFailedException",),
                )
            except ClientError:
                pass
        got = await self._call(
            "get_item",
            self.journal_table,
            TableName=self.journal_table,
            Key=key,
            ConsistentRead=True,
        )
        stored = int(got.get("Item", {}).get("shards", {}).get("N", self.shards))
        if stored != self.shards:
            raise JournalError(
                f"DynamoDB table {self.journal_table} was created for {stored} "
                f"shards, not {self.shards}: the shard count is fixed at creation"
            )

    async def _call(
        self,
        op: str,
        table: str | None,
        *,
        _passthrough: Sequence[str] = (),
        _attempt: _Attempt | None = None,
        **kwargs: Any,
    ) -> Any:
        """One DynamoDB call with bounded, jittered retries and error mapping.

        ClientErrors whose code is in `_passthrough` are raised unchanged (the caller handles
        them: conditional failures). `_attempt.ambiguous` becomes True when an earlier try may
        have been applied by the server (connection lost after sending, 5xx)."""
        from botocore.exceptions import ClientError

        client = self._require_client()
        method = getattr(client, op)
        policy = self.retry
        last: BaseException | None = None
        for attempt in range(policy.max_attempts):
            if attempt:
                self.retries += 1
                await asyncio.sleep(policy.delay(attempt - 1))
            try:
                return await method(**kwargs)
            except ClientError as exc:
                code = _error_code(exc)
                if code in _passthrough:
                    raise
                if code in RETRYABLE_CODES or (
                    _http_status(exc) >= 500 and code not in CREDENTIAL_CODES
                ):
                    last = exc
                    if _attempt is not None and code not in _REJECTED_CODES:
                        _attempt.ambiguous = True
                    log.debug("DynamoDB %s on %s: %s (attempt %d)", op, table, code, attempt + 1)
                    continue
                raise map_client_error(exc, self.settings, table, op) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                from botocore import exceptions as bex

                if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
                    raise map_client_error(exc, self.settings, table, op) from None
                if not _is_connection_error(exc):
                    raise
                last = exc
                if _attempt is not None:
                    _attempt.ambiguous = True
                log.debug(
                    "DynamoDB %s on %s: %s (attempt %d)", op, table, type(exc).__name__, attempt + 1
                )
        what = _error_code(last) or type(last).__name__ if last is not None else "?"
        raise JournalUnavailable(
            f"DynamoDB {_api_name(op)} on {table} failed after {policy.max_attempts} attempts "
            f"({what}) at {self.settings.describe()}"
        )

    # -- time -------------------------------------------------------------------------------
    def _next_ts(self, pid: str, floor: int = 0) -> int:
        now = time.time_ns() // 1000
        ts = max(now, self._last_ts + 1, self._pid_ts.get(pid, 0) + 1, floor + 1)
        self._last_ts = ts
        return ts

    def _remember_ts(self, pid: str, ts: int) -> None:
        cache = self._pid_ts
        if cache.get(pid, 0) < ts:
            cache[pid] = ts
        cache.move_to_end(pid)
        while len(cache) > self._pid_ts_cap:
            cache.popitem(last=False)

    # -- appends ----------------------------------------------------------------------------
    async def append(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> list[StoredEvent]:
        self._require_client()
        if not events:
            return []
        if expected_seq < 0:
            raise ValueError(f"expected_seq must be >= 0, got {expected_seq}")
        if len(events) > MAX_EVENTS_PER_APPEND:
            raise JournalError(
                f"an append holds at most {MAX_EVENTS_PER_APPEND} events, got {len(events)}"
            )
        if pid == META_PID:
            raise ValueError(f"{META_PID} is reserved")
        shard = shard_of(pid, self.shards)
        floor = 0
        if not self.transactions:
            floor = await self._precheck(pid, expected_seq)
        ts = self._next_ts(pid, floor)
        payloads = [orjson.dumps(e.payload).decode() for e in events]
        first = expected_seq + 1
        if len(events) == 1 or not self.transactions:
            item = self._item(pid, first, shard, ts, writer, events, payloads)
            await self._put_conditional(pid, first, item)
        else:
            await self._transact_append(pid, first, shard, ts, writer, events, payloads)
        self.appends += 1
        self._remember_ts(pid, ts)
        stored = [
            StoredEvent(
                pid=pid,
                seq=first + i,
                shard=shard,
                type=e.type,
                payload=e.payload,
                ts=ts,
                offset=ts,
                writer=writer,
            )
            for i, e in enumerate(events)
        ]
        self._listeners.notify(stored)
        return stored

    def _item(
        self,
        pid: str,
        first: int,
        shard: int,
        ts: int,
        writer: str,
        events: Sequence[NewEvent],
        payloads: Sequence[str],
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"pid": _s(pid), "seq": _n(first), "shard": _n(shard), "ts": _n(ts)}
        if len(events) == 1:
            item["type"] = _s(events[0].type)
            item["payload"] = _s(payloads[0])
        else:  # batch item (servers without transactions)
            item["last_seq"] = _n(first + len(events) - 1)
            item["batch"] = _s(
                "["
                + ",".join(
                    f"[{orjson.dumps(e.type).decode()},{p}]" for e, p in zip(events, payloads)
                )
                + "]"
            )
        if writer:
            item["writer"] = _s(writer)
        return item

    async def _precheck(self, pid: str, expected_seq: int) -> int:
        """Batch-item mode step 1: the pid's highest seq must be exactly expected_seq.
        Returns the ts of the newest item (the new ts must be above it)."""
        newest = await self._newest_item(pid)
        highest = _item_last_seq(newest) if newest else 0
        if highest > expected_seq:
            raise ConcurrencyConflict(pid, expected_seq + 1)
        if highest < expected_seq:
            raise JournalError(
                f"append to {pid} at seq {expected_seq + 1} would leave a gap: "
                f"its highest seq is {highest}"
            )
        return int(newest["ts"]["N"]) if newest else 0

    async def _newest_item(self, pid: str) -> dict[str, Any] | None:
        resp = await self._call(
            "query",
            self.journal_table,
            TableName=self.journal_table,
            KeyConditionExpression="pid = :p",
            ExpressionAttributeValues={":p": _s(pid)},
            ProjectionExpression="seq, last_seq, ts",
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = resp.get("Items") or []
        return items[0] if items else None

    async def _put_conditional(self, pid: str, first: int, item: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        attempt = _Attempt()
        try:
            await self._call(
                "put_item",
                self.journal_table,
                TableName=self.journal_table,
                Item=item,
                ConditionExpression="attribute_not_exists(pid)",
                _passthrough=("ConditionalCheckFailedException",),
                _attempt=attempt,
            )
        except ClientError:
            if attempt.ambiguous and await self._is_ours(item):
                return
            raise ConcurrencyConflict(pid, first) from None

    async def _is_ours(self, item: Mapping[str, Any]) -> bool:
        """After a lost response: is the item at this key the one we tried to write?"""
        got = await self._call(
            "get_item",
            self.journal_table,
            TableName=self.journal_table,
            Key={"pid": item["pid"], "seq": item["seq"]},
            ConsistentRead=True,
        )
        stored = got.get("Item")
        if not stored:
            return False
        return all(
            stored.get(k) == item.get(k)
            for k in ("ts", "writer", "type", "payload", "batch", "last_seq")
        )

    async def _transact_append(
        self,
        pid: str,
        first: int,
        shard: int,
        ts: int,
        writer: str,
        events: Sequence[NewEvent],
        payloads: Sequence[str],
    ) -> None:
        from botocore.exceptions import ClientError

        items = [
            {
                "Put": {
                    "TableName": self.journal_table,
                    "Item": self._item(pid, first + i, shard, ts, writer, [e], [p]),
                    "ConditionExpression": "attribute_not_exists(pid)",
                }
            }
            for i, (e, p) in enumerate(zip(events, payloads))
        ]
        # The same token on every retry: DynamoDB applies the transaction at most once.
        token = str(uuid.uuid4())
        for _ in range(self.retry.max_attempts):
            try:
                await self._call(
                    "transact_write_items",
                    self.journal_table,
                    TransactItems=items,
                    ClientRequestToken=token,
                    _passthrough=(
                        "TransactionCanceledException",
                        "IdempotentParameterMismatchException",
                    ),
                )
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code == "IdempotentParameterMismatchException":  # pragma: no cover
                    raise map_client_error(
                        exc, self.settings, self.journal_table, "TransactWriteItems"
                    ) from None
                reasons = _cancellation_reasons(exc)
                for i, reason in enumerate(reasons):
                    if reason == "ConditionalCheckFailed":
                        raise ConcurrencyConflict(pid, first + i) from None
                if reasons and all(
                    r
                    in (
                        "None",
                        "",
                        "TransactionConflict",
                        "ThrottlingError",
                        "ProvisionedThroughputExceeded",
                    )
                    for r in reasons
                ):
                    self.retries += 1
                    await asyncio.sleep(self.retry.delay(1))
                    continue  # contention or throttling inside the transaction: retry
                raise map_client_error(
                    exc, self.settings, self.journal_table, "TransactWriteItems"
                ) from None
        raise JournalUnavailable(
            f"DynamoDB TransactWriteItems on {self.journal_table} kept "
            f"being cancelled ({self.retry.max_attempts} attempts)"
        )

    # -- reads ------------------------------------------------------------------------------
    async def read(self, pid: str, from_seq: int = 1) -> list[StoredEvent]:
        self._require_client()
        from_seq = max(1, from_seq)
        out: list[StoredEvent] = []
        if from_seq > 1:
            # A batch item keyed below from_seq may hold events at and after it.
            resp = await self._call(
                "query",
                self.journal_table,
                TableName=self.journal_table,
                KeyConditionExpression="pid = :p AND seq < :s",
                ExpressionAttributeValues={":p": _s(pid), ":s": _n(from_seq)},
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
            for item in resp.get("Items") or []:
                if "batch" in item and _item_last_seq(item) >= from_seq:
                    out.extend(e for e in _item_events(item) if e.seq >= from_seq)
        kwargs: dict[str, Any] = dict(
            TableName=self.journal_table,
            KeyConditionExpression="pid = :p AND seq >= :s",
            ExpressionAttributeValues={":p": _s(pid), ":s": _n(from_seq)},
            ConsistentRead=True,
        )
        if self._read_page_size:
            kwargs["Limit"] = self._read_page_size
        while True:
            resp = await self._call("query", self.journal_table, **kwargs)
            for item in resp.get("Items") or []:
                out.extend(_item_events(item))
            lek = resp.get("LastEvaluatedKey")
            if not lek:
                break
            kwargs["ExclusiveStartKey"] = lek
        if out:
            self._remember_ts(pid, max(e.ts for e in out))
        return out

    async def highest_seq(self, pid: str) -> int:
        self._require_client()
        newest = await self._newest_item(pid)
        if newest is None:
            return 0
        self._remember_ts(pid, int(newest["ts"]["N"]))
        return _item_last_seq(newest)

    # -- snapshots --------------------------------------------------------------------------
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the snapshot with the highest seq: an older one does not replace a newer one."""
        from botocore.exceptions import ClientError

        self._require_client()
        item = {
            "pid": _s(snapshot.pid),
            "seq": _n(snapshot.seq),
            "ts": _n(snapshot.ts or time.time_ns() // 1000),
            "state": _s(orjson.dumps(snapshot.state).decode()),
        }
        try:
            await self._call(
                "put_item",
                self.snapshot_table,
                TableName=self.snapshot_table,
                Item=item,
                ConditionExpression="attribute_not_exists(pid) OR seq < :seq",
                ExpressionAttributeValues={":seq": _n(snapshot.seq)},
                _passthrough=("ConditionalCheckFailedException",),
            )
        except ClientError:
            pass  # a snapshot at this seq or newer is stored already

    async def load_snapshot(self, pid: str) -> Snapshot | None:
        self._require_client()
        resp = await self._call(
            "get_item",
            self.snapshot_table,
            TableName=self.snapshot_table,
            Key={"pid": _s(pid)},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        if not item:
            return None
        return Snapshot(
            pid=item["pid"]["S"],
            seq=int(item["seq"]["N"]),
            state=orjson.loads(item["state"]["S"]),
            ts=int(item["ts"]["N"]),
        )

    # -- projections ------------------------------------------------------------------------
    async def read_shards(
        self, start: int, end: int, after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        """Up to `limit` events of shards [start, end) with offset > after.get(shard, 0), in
        (offset, pid, seq) order; events sharing (shard, offset) are never split (see module
        docstring). One paginated index Query per shard, run concurrently; no scans."""
        start, end = max(0, start), min(end, self.shards)
        return await self._read_shard_list(range(start, end), after, limit)

    async def read_shard_set(
        self, shards: Sequence[int], after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        """`read_shards` for a set of shards: one paginated Query per shard, concurrently."""
        return await self._read_shard_list(
            sorted({s for s in shards if 0 <= s < self.shards}), after, limit
        )

    async def _read_shard_list(
        self, shards: Sequence[int], after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        self._require_client()
        n = len(shards)
        if limit <= 0 or n == 0:
            return []
        first_page = max(2, min(limit + 1, 2 * (-(-limit // n)) + 1))
        sem = asyncio.Semaphore(self._query_concurrency)
        cursors = [_ShardCursor(self, s, after.get(s, 0), first_page, sem) for s in shards]
        await asyncio.gather(*(c.ensure_group() for c in cursors))
        heap: list[tuple[tuple[int, str, int], int]] = []
        for i, c in enumerate(cursors):
            if c.has_group():
                heap.append((c.head_key(), i))
        heapq.heapify(heap)
        out: list[StoredEvent] = []
        while heap:
            _, i = heapq.heappop(heap)
            cursor = cursors[i]
            group = cursor.peek_group()
            if out and len(out) + len(group) > limit:
                break
            out.extend(cursor.pop_group())
            if len(out) >= limit:
                break
            await cursor.ensure_group()
            if cursor.has_group():
                heapq.heappush(heap, (cursor.head_key(), i))
        out.sort(key=_event_sort_key)
        return out

    # -- notifications ----------------------------------------------------------------------
    def subscribe(self, listener: AppendListener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)


def _cancellation_reasons(exc: BaseException) -> list[str]:
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons")
    if reasons:
        return [str(r.get("Code", "")) for r in reasons]
    # Older botocore versions: only the message carries them: "... [ConditionalCheckFailed, None]"
    message = _error_message(exc)
    if "[" in message and message.endswith("]"):
        return [r.strip() for r in message[message.rindex("[") + 1 : -1].split(",")]
    return []


class _ShardCursor:
    """One shard's stream from the index, read page by page, served in groups of events that
    share an offset (a group is complete once an item with a larger ts or the end is seen)."""

    def __init__(
        self, journal: DynamoDBJournal, shard: int, after: int, page: int, sem: asyncio.Semaphore
    ) -> None:
        self.journal = journal
        self.shard = shard
        self.after = after
        self.page = page
        self.sem = sem
        self.items: collections.deque[dict[str, Any]] = collections.deque()
        self.start_key: dict[str, Any] | None = None
        self.exhausted = False

    async def _fetch(self) -> None:
        j = self.journal
        kwargs: dict[str, Any] = dict(
            TableName=j.journal_table,
            IndexName=SHARD_INDEX,
            KeyConditionExpression="#sh = :s AND #ts > :t",
            ExpressionAttributeNames={"#sh": "shard", "#ts": "ts"},
            ExpressionAttributeValues={":s": _n(self.shard), ":t": _n(self.after)},
            Limit=self.page,
        )
        if self.start_key:
            kwargs["ExclusiveStartKey"] = self.start_key
        async with self.sem:
            resp = await j._call("query", j.journal_table, **kwargs)
        self.items.extend(resp.get("Items") or [])
        self.start_key = resp.get("LastEvaluatedKey") or None
        if self.start_key is None:
            self.exhausted = True
        self.page = min(1000, self.page * 2)

    def _complete(self) -> bool:
        if not self.items:
            return self.exhausted
        if self.exhausted:
            return True
        head = self.items[0]["ts"]["N"]
        return self.items[-1]["ts"]["N"] != head

    async def ensure_group(self) -> None:
        while not self._complete():
            await self._fetch()

    def has_group(self) -> bool:
        return bool(self.items)

    def peek_group(self) -> list[StoredEvent]:
        head = self.items[0]["ts"]["N"]
        events: list[StoredEvent] = []
        for item in self.items:
            if item["ts"]["N"] != head:
                break
            events.extend(_item_events(item))
        events.sort(key=_event_sort_key)
        return events

    def head_key(self) -> tuple[int, str, int]:
        return _event_sort_key(self.peek_group()[0])

    def pop_group(self) -> list[StoredEvent]:
        events = self.peek_group()
        head = self.items[0]["ts"]["N"]
        while self.items and self.items[0]["ts"]["N"] == head:
            self.items.popleft()
        return events

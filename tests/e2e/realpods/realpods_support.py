"""Helpers of the real-pod suite: a steady load through the cluster's Service, and the checks
made after every move (nothing acknowledged lost or doubled, only retryable answers, every
thread's journal gap-free, the read model equal to the journal)."""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import sqlalchemy as sa
import yaml
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.convergence import journaled_messages
from threadweaver.adapters.journal.dynamodb import DynamoDBJournal, DynamoDBSettings
from threadweaver.domain import new_ulid, thread_persistence_id

SHARDS = 64
ROOT = Path(__file__).resolve().parents[3]
NODE = "tw-node-0"
REAL_PODS_LABEL = "threadweaver.io/real-pods=true"


class Load:
    """Clients posting through one URL (the Service). A command is retried with its
    Idempotency-Key until it is acknowledged (503 + Retry-After, or a connection cut while a
    pod goes away): so every command sent is acknowledged once, and a doubled or lost one
    shows in the journal. Any other answer, or a 503 without Retry-After, is recorded as wrong."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.clients = clients
        self.threads: dict[str, str] = {}
        self.messages: dict[str, list[str]] = collections.defaultdict(list)
        self.texts: dict[str, str] = {}  # acknowledged message id -> its text
        self.wrong: list[str] = []
        self.unavailable = 0  # 503 answers (each with Retry-After)
        self.cut = 0  # connections cut or refused before an answer
        self.acked = 0
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._session is not None
        await self._session.close()

    async def finish(self, deadline: float = 120) -> None:
        """Stop sending new commands; wait for the ones in flight to be acknowledged."""
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), deadline)

    def summary(self) -> str:
        return (
            f"threads {len(self.threads)}, acknowledged commands {self.acked}, "
            f"503+Retry-After {self.unavailable}, cut connections {self.cut}, wrong {len(self.wrong)}"
        )

    async def _command(self, path: str, body: dict) -> dict:
        assert self._session is not None
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, f"{path} not acknowledged in 90 s: {self.summary()}"
            try:
                async with self._session.post(
                    self.url + path, json=body, headers={"Idempotency-Key": key}
                ) as r:
                    text = await r.text()
                    if r.status == 200:
                        self.acked += 1
                        return json.loads(text)
                    if r.status == 503 and r.headers.get("Retry-After"):
                        self.unavailable += 1
                        await asyncio.sleep(min(float(r.headers["Retry-After"]), 1.0))
                        continue
                    self.wrong.append(
                        f"{r.status} {path} {r.headers.get('Retry-After')} {text[:200]}"
                    )
                    await asyncio.sleep(0.2)
            except (TimeoutError, aiohttp.ClientError):
                self.cut += 1
                await asyncio.sleep(0.1)

    async def _client(self) -> None:
        admin = new_ulid()
        data = await self._command(
            "/v1/threads/create",
            {
                "accountId": admin,
                "title": "real pods",
                "administratorIds": [admin],
                "memberIds": [],
                "createAt": int(time.time() * 1000),
            },
        )
        tid = data["thread_id"]
        self.threads[tid] = admin
        while not self.stop.is_set():
            text = uuid.uuid4().hex
            data = await self._command(
                f"/v1/threads/{tid}/messages/add",
                {
                    "accountId": admin,
                    "createAt": int(time.time() * 1000),
                    "messages": [{"text": text, "toAccountIds": []}],
                },
            )
            assert len(data["messageIds"]) == 1, data
            self.messages[tid] += data["messageIds"]
            self.texts[data["messageIds"][0]] = text
            await asyncio.sleep(0.02)


async def check_consistency(
    load: Load, dynamodb_url: str, table_prefix: str, read_model_url: str
) -> str:
    """The journal holds every acknowledged command exactly once (by message id and by text),
    each thread's sequence numbers are 1..n, and the read model converges to the journal."""
    assert not load.wrong, load.wrong[:10]
    settings = DynamoDBSettings(
        endpoint_url=dynamodb_url,
        table_prefix=table_prefix,
        access_key_id="local",
        secret_access_key="local",
    )
    journal = DynamoDBJournal(settings, shards=SHARDS)
    await journal.start()
    try:
        journaled = await journaled_messages(journal, load.threads)  # gap-free, no id twice
        texts: collections.Counter[str] = collections.Counter()
        for tid in load.threads:
            for e in await journal.read(thread_persistence_id(tid)):
                if e.type == "MessagesAdded":
                    texts.update(m["text"] for m in e.payload["messages"])
    finally:
        await journal.close()
    lost = [m for tid, ids in load.messages.items() for m in ids if m not in set(journaled[tid])]
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:3]}"
    doubled = [t for t, n in texts.items() if n > 1]
    assert not doubled, f"{len(doubled)} commands written twice, e.g. {doubled[:3]}"
    acked_msgs = sum(map(len, load.messages.values()))
    journaled_msgs = sum(map(len, journaled.values()))
    assert journaled_msgs == acked_msgs, (journaled_msgs, acked_msgs)
    await read_model_equals(read_model_url, journaled, timeout=90)
    return f"{load.summary()}; journaled messages {journaled_msgs}, lost 0, doubled 0"


async def read_model_equals(url: str, journaled: dict[str, list[str]], timeout: float) -> None:
    """The read model's live messages of these threads (the cluster's read model also holds
    the threads of earlier loads) become exactly the journal's."""
    engine = create_async_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.text(
                            "SELECT thread_id, id FROM thread_message "
                            "WHERE deleted = 0 AND thread_id IN :tids"
                        ).bindparams(sa.bindparam("tids", expanding=True)),
                        {"tids": list(journaled)},
                    )
                ).all()
            projected: dict[str, list[str]] = collections.defaultdict(list)
            for tid, mid in rows:
                projected[tid].append(mid)
            differing = [t for t, ids in journaled.items() if sorted(projected[t]) != sorted(ids)]
            if not differing:
                return
            assert time.monotonic() < deadline, (
                f"read model differs from the journal for {len(differing)} threads, "
                f"e.g. {differing[0]}: {len(projected[differing[0]])} rows, "
                f"{len(journaled[differing[0]])} journaled"
            )
            await asyncio.sleep(0.3)
    finally:
        await engine.dispose()


async def wait(check, timeout: float, what: str, interval: float = 1.0, on_fail=lambda: ""):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if asyncio.iscoroutinefunction(check):
                last = await check()
            else:  # kubectl calls: off the event loop, so the load keeps going
                last = await asyncio.to_thread(check)
            if last:
                return last
        except AssertionError:
            raise
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last {last!r}\n{on_fail()}"
            )
        await asyncio.sleep(interval)


@dataclass
class Backing:
    """The sample's MariaDB and dynalite in one namespace, and how this machine reaches them."""

    namespace: str
    dynamodb_url: str  # http://<dynalite Service IP>:8000
    read_model_url: str  # mysql+aiomysql://...@<mariadb Service IP>:3306/threadweaver


def start_backing(kube, namespace: str) -> Backing:
    kube.kubectl(
        "apply", "-n", namespace, "-f", str(ROOT / "config" / "samples" / "local-services.yaml")
    )
    for deploy in ("mariadb", "dynalite"):
        kube.kubectl(
            "rollout", "status", f"deploy/{deploy}", "-n", namespace, "--timeout=240s", timeout=260
        )
    ip = {
        svc: kube.kubectl(
            "get", "svc", svc, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout
        for svc in ("mariadb", "dynalite")
    }
    return Backing(
        namespace=namespace,
        dynamodb_url=f"http://{ip['dynalite']}:8000",
        read_model_url=f"mysql+aiomysql://threadweaver:threadweaver@{ip['mariadb']}:3306/threadweaver",
    )


def sample_cluster(name: str, **spec) -> list[dict]:
    """config/samples/threadweavercluster-local.yaml with another name and spec overrides."""
    docs = list(
        yaml.safe_load_all(
            (ROOT / "config" / "samples" / "threadweavercluster-local.yaml").read_text()
        )
    )
    out = []
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["metadata"]["name"] = doc["metadata"]["name"].replace("chat-local", name)
        else:
            doc["metadata"]["name"] = name
            doc["spec"]["journal"]["dynamodb"]["credentialsSecret"]["name"] = f"{name}-aws"
            doc["spec"]["readModel"]["mysql"]["passwordSecret"]["name"] = f"{name}-mysql"
            doc["spec"].update(spec)
        out.append(doc)
    return out

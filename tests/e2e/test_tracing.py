"""Tracing across members: one trace from the HTTP request on one member, through the forwarded
command (W3C traceparent on the hop), to the owner's journal append, and the owner's projection
span linked to it; exported over OTLP/HTTP to a receiver in the test (tests/support/
otlp_receiver.py). Two real `threadweaver serve --cluster` members on the control plane
(the test plays the operator's part, tests/support/cluster_driver.py), dynalite and MariaDB.
"""

from __future__ import annotations

import json
import secrets
import time

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.cluster_driver import ClusterDriver
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.runtime_process import RuntimeProcess, free_port
from tests.support.services import ensure_services
from threadweaver.adapters.kube.client import api_client
from threadweaver.domain import new_ulid, thread_persistence_id
from threadweaver.shards import ShardMap, shard_of

SHARDS = 8
CLUSTER = "tr"
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind


@pytest.fixture
async def backends():
    async with production_backends(ensure_services()) as b:
        yield b


@pytest.fixture
async def receiver():
    r = await OtlpReceiver(free_port()).start()
    yield r
    await r.stop()


def _one(spans: list[ReceivedSpan], **match: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.instance, s.name) for s in spans])
    return found[0]


async def test_a_forwarded_command_is_one_trace_across_two_members(
    kube, kube_namespace, backends, receiver, tmp_path
):
    api = await api_client(kube.kubeconfig)
    driver = ClusterDriver(api, kube_namespace, CLUSTER)
    members: dict[str, RuntimeProcess] = {}
    env = {
        "THREADWEAVER_OTEL_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s instead of 5 s
        "THREADWEAVER_LOG_FORMAT": "json",
    }
    for name in (f"{CLUSTER}-0", f"{CLUSTER}-1"):
        proc = RuntimeProcess(
            tmp_path / name,
            name=name,
            env=env,
            args=[
                "--cluster",
                CLUSTER,
                "--namespace",
                kube_namespace,
                "--kubeconfig",
                kube.kubeconfig,
                *backends.serve_args(),
                "--shards",
                str(SHARDS),
                "--projection-poll-interval",
                "0.5",
            ],
        )
        proc.args += ["--peer-address", f"127.0.0.1:{proc.port}"]
        members[name] = proc.start(wait=False)
    try:
        addresses = {n: f"127.0.0.1:{p.port}" for n, p in members.items()}
        await driver.publish(ShardMap.initial(SHARDS, sorted(members), addresses))
        for p in members.values():
            p.wait_ready(60)
        admin = new_ulid()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            create = {
                "accountId": admin,
                "title": "traced",
                "administratorIds": [admin],
                "memberIds": [],
                "createAt": int(time.time() * 1000),
            }
            async with session.post(
                members[f"{CLUSTER}-0"].url + "/v1/threads/create", json=create
            ) as r:
                assert r.status == 200, await r.text()
                thread_id = (await r.json())["thread_id"]
            assert driver.map is not None
            owner = driver.map.owner_of(shard_of(thread_persistence_id(thread_id), SHARDS))
            sender = next(n for n in members if n != owner)
            # the client's own span: the runtime's spans continue its trace
            trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
            add = {
                "accountId": admin,
                "createAt": int(time.time() * 1000),
                "messages": [{"text": "hello", "toAccountIds": []}],
            }
            async with session.post(
                f"{members[sender].url}/v1/threads/{thread_id}/messages/add",
                json=add,
                headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
            ) as r:
                assert r.status == 200, await r.text()

        def complete(spans: list[ReceivedSpan]) -> bool:
            names = {(s.instance, s.name) for s in spans if s.trace_id == trace_id}
            linked = any(
                s.name == "project events" and any(t == trace_id for t, _ in s.links) for s in spans
            )
            return linked and {(owner, "journal append"), (sender, "forward command")} <= names

        spans = await receiver.wait_for(complete, timeout=30)
        trace = [s for s in spans if s.trace_id == trace_id]
        assert {s.service for s in trace} == {"threadweaver"}

        # sender: the request's server span, a child of the client's; the forwarding span in it
        received = _one(trace, instance=sender, kind=SERVER)
        assert received.name == "POST /v1/threads/{thread_id}/messages/add"
        assert received.parent_span_id == client_span
        forward = _one(trace, instance=sender, name="forward command")
        assert forward.kind == CLIENT and forward.parent_span_id == received.span_id
        assert forward.attributes["server.address"] == addresses[owner]

        # owner: the internal API's server span continues the forwarding span (traceparent)
        executed = _one(trace, instance=owner, kind=SERVER)
        assert executed.name == "POST /internal/v1/execute"
        assert executed.parent_span_id == forward.span_id
        append = _one(trace, instance=owner, name="journal append")
        assert append.parent_span_id == executed.span_id
        assert append.attributes["threadweaver.pid"] == thread_persistence_id(thread_id)

        # the owner's projection: a trace of its own, linked to the command's span, whose trace
        # context the event's envelope carried
        projections = [
            s
            for s in spans
            if s.name == "project events" and (trace_id, executed.span_id) in s.links
        ]
        assert projections and all(s.instance == owner for s in projections)
        assert all(s.trace_id != trace_id and s.parent_span_id == "" for s in projections)

        # the members log JSON lines
        for p in members.values():
            lines = p.log_path.read_text().splitlines()
            assert lines and all(json.loads(line)["level"] for line in lines), p.log_tail()
    finally:
        for p in members.values():
            p.stop()
        await api.close()

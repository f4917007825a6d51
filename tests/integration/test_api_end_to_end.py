"""The HTTP API end to end against a real `threadweaver serve` process, on the embedded SQLite
default and on the production backends (dynalite + MariaDB): the upstream smoke flow, the flows
of upstream's ThreadControllerImplSpec, and the fixes we made."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.backends import production_backends
from tests.support.runtime_process import RuntimeProcess
from tests.support.services import ensure_services
from tests.support.waiting import eventually
from threadweaver.domain import new_ulid


@pytest.fixture(scope="module", params=["sqlite", "dynamodb+mysql"])
def server(request, tmp_path_factory):
    if request.param == "sqlite":
        proc = RuntimeProcess(tmp_path_factory.mktemp("embedded"), name="embedded").start()
        yield proc
        assert proc.stop() == 0, proc.log_tail()
        return
    services = ensure_services()
    with asyncio.Runner() as runner:
        backends = production_backends(services)
        prod = runner.run(backends.__aenter__())
        proc = RuntimeProcess(
            tmp_path_factory.mktemp("production"), name="production", args=prod.serve_args()
        ).start()
        try:
            yield proc
            assert proc.stop() == 0, proc.log_tail()
        finally:
            proc.kill()
            runner.run(backends.__aexit__(None, None, None))


@pytest.fixture
async def http(server):
    async with aiohttp.ClientSession(server.url) as session:
        yield session


def now_ms() -> int:
    return int(time.time() * 1000)


async def post(http, path, body, status=200):
    async with http.post(path, json=body) as r:
        data = await r.json()
        assert r.status == status, (r.status, data)
        return data


async def get(http, path, **params):
    async with http.get(path, params=params) as r:
        return r.status, await r.json()


async def create_thread(http, admin, members=(), **extra):
    body = {
        "accountId": admin,
        "parentThreadId": None,
        "title": "test",
        "remarks": None,
        "administratorIds": [admin],
        "memberIds": list(members),
        "createAt": now_ms(),
    }
    body.update(extra)
    data = await post(http, "/v1/threads/create", body)
    assert data["error_messages"] == [] and len(data["thread_id"]) == 26
    return data["thread_id"]


async def visible(http, path, account):
    status, data = await get(http, path, account_id=account)
    return data if status == 200 else None


# --- upstream's smoke script: create, sleep, get (here: wait until readable, then get) ---------
async def test_smoke_create_wait_get(http):
    admin = new_ulid()
    tid = await create_thread(http, admin)
    await eventually(
        lambda: visible(http, f"/v1/threads/{tid}", admin), what="the new thread to be readable"
    )
    status, data = await get(http, f"/v1/threads/{tid}", account_id=admin)
    assert status == 200
    assert data["result"]["id"] == tid and data["error_messages"] == []
    assert set(data["result"]) >= {
        "id",
        "creatorId",
        "parentThreadId",
        "title",
        "remarks",
        "createdAt",
        "updatedAt",
    }


# --- ThreadControllerImplSpec -----------------------------------------------------------------
async def test_create(http):
    admin = new_ulid()
    tid = await create_thread(http, admin)
    data = await eventually(
        lambda: visible(http, f"/v1/threads/{tid}", admin), what="the new thread to be readable"
    )
    assert data["result"]["creatorId"] == admin


async def test_destroy(http):
    admin = new_ulid()
    tid = await create_thread(http, admin)
    data = await post(
        http, f"/v1/threads/{tid}/destroy", {"accountId": admin, "createAt": now_ms()}
    )
    assert data == {"threadId": tid, "error_messages": [], "seq": 2}  # seq: read your writes


async def test_join_administrator_ids(http):
    admin, other = new_ulid(), new_ulid()
    tid = await create_thread(http, admin)
    data = await post(
        http,
        f"/v1/threads/{tid}/administrator-ids/join",
        {"accountId": admin, "accountIds": [other], "createAt": now_ms()},
    )
    assert data == {"threadId": tid, "error_messages": [], "seq": 2}
    path = f"/v1/threads/{tid}/administrator-ids"
    (ids,) = await eventually(lambda: _ids_when(http, path, admin, 2), what="2 administrators")
    assert ids == [admin, other]  # all ids, not only the caller's (a fix)


async def test_join_member_ids(http):
    admin, m1, m2 = new_ulid(), new_ulid(), new_ulid()
    tid = await create_thread(http, admin)
    await post(
        http,
        f"/v1/threads/{tid}/member-ids/join",
        {"accountId": admin, "accountIds": [m1, m2], "createAt": now_ms()},
    )
    (ids,) = await eventually(
        lambda: _ids_when(http, f"/v1/threads/{tid}/member-ids", admin, 2), what="2 members"
    )
    assert ids == [m1, m2]


async def _ids_when(http, path, account, n):
    """The ids once there are `n` of them (a list in a tuple, so that none is still truthy)."""
    data = await visible(http, path, account)
    return (data["results"],) if data and len(data["results"]) == n else None


async def test_add_messages(http):
    admin, member = new_ulid(), new_ulid()
    tid = await create_thread(http, admin, members=[member])
    data = await post(
        http,
        f"/v1/threads/{tid}/messages/add",
        {
            "accountId": member,
            "createAt": now_ms(),
            "messages": [{"replyMessageId": None, "toAccountIds": [], "text": "ABC"}],
        },
    )
    assert len(data["messageIds"]) == 1 and data["error_messages"] == []

    async def messages():
        d = await visible(http, f"/v1/threads/{tid}/messages", admin)
        return d["result"] if d and d["result"] else None

    result = await eventually(messages, what="the message to be readable")
    assert result[0]["body"] == "ABC" and result[0]["senderId"] == member
    assert result[0]["type"] == "text" and result[0]["id"] == data["messageIds"][0]


async def test_remove_messages(http):
    admin, member = new_ulid(), new_ulid()
    tid = await create_thread(http, admin, members=[member])
    added = await post(
        http,
        f"/v1/threads/{tid}/messages/add",
        {
            "accountId": member,
            "createAt": now_ms(),
            "messages": [
                {"replyMessageId": None, "toAccountIds": [], "text": "x"},
                {"replyMessageId": None, "toAccountIds": [], "text": "y"},
            ],
        },
    )
    removed = await post(
        http,
        f"/v1/threads/{tid}/messages/remove",
        {"accountId": member, "messageIds": added["messageIds"][:1], "createAt": now_ms()},
    )
    assert removed["messageIds"] == added["messageIds"][:1]

    async def only_y():
        d = await visible(http, f"/v1/threads/{tid}/messages", member)
        return d["result"] if d and [m["body"] for m in d["result"]] == ["y"] else None

    await eventually(only_y, what="only message y")  # removed messages are not returned (a fix)


# --- the fixes and refusals, over the wire -----------------------------------------------------
async def test_leave_routes_are_wired(http):
    admin, a2, m = new_ulid(), new_ulid(), new_ulid()
    tid = await create_thread(http, admin, members=[m])
    await post(
        http,
        f"/v1/threads/{tid}/administrator-ids/join",
        {"accountId": admin, "accountIds": [a2], "createAt": now_ms()},
    )
    await post(
        http,
        f"/v1/threads/{tid}/administrator-ids/leave",
        {"accountId": admin, "administratorIds": [a2], "createAt": now_ms()},
    )
    await post(
        http,
        f"/v1/threads/{tid}/member-ids/leave",
        {"accountId": admin, "accountIds": [m], "createAt": now_ms()},
    )
    await eventually(
        lambda: _ids_when(http, f"/v1/threads/{tid}/member-ids", admin, 0), what="no members"
    )
    await eventually(
        lambda: _ids_when(http, f"/v1/threads/{tid}/administrator-ids", admin, 1),
        what="1 administrator",
    )
    last = await post(
        http,
        f"/v1/threads/{tid}/administrator-ids/leave",
        {"accountId": admin, "accountIds": [admin], "createAt": now_ms()},
        409,
    )
    assert last == {"error_messages": ["Administrators can not be empty."]}


async def test_parent_thread_id_is_kept(http):
    admin = new_ulid()
    parent = await create_thread(http, admin)
    child = await create_thread(http, admin, parentThreadId=parent)
    data = await eventually(
        lambda: visible(http, f"/v1/threads/{child}", admin), what="the child thread to be readable"
    )
    assert data["result"]["parentThreadId"] == parent


async def test_domain_refusals_are_4xx_with_error_messages(http):
    admin, outsider = new_ulid(), new_ulid()
    tid = await create_thread(http, admin)
    data = await post(
        http,
        f"/v1/threads/{tid}/member-ids/join",
        {"accountId": outsider, "accountIds": [outsider], "createAt": now_ms()},
        403,
    )
    assert data["error_messages"] == ["The senderId is not the administrator"]
    data = await post(
        http,
        f"/v1/threads/{tid}/messages/add",
        {
            "accountId": outsider,
            "createAt": now_ms(),
            "messages": [{"replyMessageId": None, "toAccountIds": [], "text": "x"}],
        },
        403,
    )
    assert data["error_messages"] == ["The senderId is not the member"]
    missing = new_ulid()
    data = await post(
        http, f"/v1/threads/{missing}/destroy", {"accountId": admin, "createAt": now_ms()}, 404
    )
    assert data["error_messages"]
    status, data = await get(http, f"/v1/threads/{missing}", account_id=admin)
    assert status == 404 and data == {"error_messages": ["thread is not found"]}


async def test_destroyed_threads_are_not_returned(http):
    admin = new_ulid()
    tid = await create_thread(http, admin)
    await eventually(
        lambda: visible(http, f"/v1/threads/{tid}", admin), what="the new thread to be readable"
    )
    await post(http, f"/v1/threads/{tid}/destroy", {"accountId": admin, "createAt": now_ms()})

    async def gone():
        status, _ = await get(http, f"/v1/threads/{tid}", account_id=admin)
        return status == 404

    await eventually(gone, what="the destroyed thread to be gone (404)")
    await post(http, f"/v1/threads/{tid}/destroy", {"accountId": admin, "createAt": now_ms()}, 404)


async def test_list_threads_paginates_in_a_stable_order(http):
    admin = new_ulid()
    tids = [await create_thread(http, admin, createAt=1_000 + i) for i in range(7)]

    async def all_listed():
        status, data = await get(http, "/v1/threads", account_id=admin, limit=100)
        return data["results"] if status == 200 and len(data["results"]) == 7 else None

    await eventually(all_listed, what="7 threads listed")
    pages = []
    for offset in (0, 3, 6):
        status, data = await get(http, "/v1/threads", account_id=admin, offset=offset, limit=3)
        assert status == 200
        pages += [t["id"] for t in data["results"]]
    assert pages == tids


async def test_bad_input_is_400_naming_the_field(http):
    data = await post(
        http,
        "/v1/threads/create",
        {
            "accountId": "nope",
            "title": "x" * 256,
            "administratorIds": [],
            "memberIds": [],
            "createAt": now_ms(),
        },
        400,
    )
    text = " ".join(data["error_messages"])
    assert "accountId" in text and "title" in text and "administratorIds" in text
    async with http.post(
        "/v1/threads/create", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400 and "error_messages" in await r.json()


async def test_probes_metrics_and_openapi(http):
    for path in ("/live", "/ready"):
        async with http.get(path) as r:
            assert r.status == 200
    async with http.get("/metrics") as r:
        assert r.status == 200 and "http_requests" in (await r.text())
    async with http.get("/v1/openapi.json") as r:
        doc = await r.json()
        assert doc["openapi"].startswith("3.") and "/v1/threads/create" in doc["paths"]

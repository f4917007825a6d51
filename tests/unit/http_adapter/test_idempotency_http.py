"""The Idempotency-Key header over HTTP, against the real EntityManager and SQLite journal:
validation (400 naming the header), retries answering the first result for every command,
CreateThread's derived id, a key reused for another body (422), and the OpenAPI document."""

from __future__ import annotations

import asyncio

import pytest

from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.application.idempotency import derive_thread_id
from threadweaver.domain import new_ulid, thread_persistence_id

KEY = "Idempotency-Key"
REUSED = {"error_messages": ["Idempotency-Key was used for a different request"]}


@pytest.fixture
async def journal(tmp_path):
    j = SqliteJournal(tmp_path / "journal.db", shards=16, synchronous="off")
    await j.start()
    yield j
    await j.close()


@pytest.fixture
async def entities(journal):
    mgr = EntityManager(journal, EntitySettings(snapshot_every=0))
    yield mgr
    await mgr.close()


@pytest.fixture
async def http(make_client, entities):
    return await make_client(commands=entities)


async def call(http, path, body, key=None, status=200):
    headers = {KEY: key} if key is not None else {}
    resp = await http.post(path, json=body, headers=headers)
    data = await resp.json()
    assert resp.status == status, (resp.status, data)
    return data


def create_body(admin, members=(), title="t", at=1):
    return {
        "accountId": admin,
        "title": title,
        "administratorIds": [admin],
        "memberIds": list(members),
        "createAt": at,
    }


def add_body(sender, *texts, at=2):
    return {
        "accountId": sender,
        "createAt": at,
        "messages": [{"text": t, "toAccountIds": []} for t in texts],
    }


async def journaled(journal, tid):
    return await journal.read(thread_persistence_id(tid))


# --- the header ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "a b", "a/b", "x" * 129, "key,other", "ключ"])
async def test_an_invalid_key_is_a_400_naming_the_header(http, value):
    resp = await http.post(
        "/v1/threads/create",
        json=create_body(new_ulid()),
        headers={KEY: value.encode().decode("latin-1")},
    )
    data = await resp.json()
    assert resp.status == 400
    assert data == {
        "error_messages": ["Idempotency-Key: must be 1 to 128 characters of A-Z a-z 0-9 _ . : -"]
    }


async def test_the_key_must_be_given_once(http):
    resp = await http.post(
        "/v1/threads/create", json=create_body(new_ulid()), headers=[(KEY, "a"), (KEY, "b")]
    )
    assert resp.status == 400
    assert (await resp.json())["error_messages"] == ["Idempotency-Key: give the header once"]


@pytest.mark.parametrize("value", ["a", "A.b:c-d_1", "x" * 128, "01HQ3Z6X4K7Y8ZV5C2N9PBWQ1A"])
async def test_valid_keys(http, value):
    data = await call(http, "/v1/threads/create", create_body(new_ulid()), key=value)
    assert len(data["thread_id"]) == 26


async def test_the_header_name_is_case_insensitive(http):
    admin = new_ulid()
    resp = await http.post(
        "/v1/threads/create", json=create_body(admin), headers={"idempotency-key": "lower"}
    )
    assert (await resp.json())["thread_id"] == derive_thread_id(admin, "lower")


# --- retries -----------------------------------------------------------------------------------
async def test_a_retried_create_answers_the_same_thread(http, journal):
    admin = new_ulid()
    first = await call(http, "/v1/threads/create", create_body(admin), key="create-1")
    again = await call(http, "/v1/threads/create", create_body(admin), key="create-1")
    assert (
        first
        == again
        == {
            "thread_id": derive_thread_id(admin, "create-1"),
            "error_messages": [],
            "seq": 1,  # a retry answers the seq after the first attempt
        }
    )
    assert len(await journaled(journal, first["thread_id"])) == 1
    other = await call(http, "/v1/threads/create", create_body(new_ulid()), key="create-1")
    assert other["thread_id"] != first["thread_id"]
    unkeyed = [await call(http, "/v1/threads/create", create_body(admin)) for _ in range(2)]
    assert unkeyed[0]["thread_id"] != unkeyed[1]["thread_id"]


async def test_a_retried_add_messages_answers_the_first_ids(http, journal):
    admin = new_ulid()
    tid = (await call(http, "/v1/threads/create", create_body(admin)))["thread_id"]
    path = f"/v1/threads/{tid}/messages/add"
    first = await call(http, path, add_body(admin, "a", "b"), key="add-1")
    again = await call(http, path, add_body(admin, "a", "b"), key="add-1")
    assert first == again and len(first["messageIds"]) == 2
    assert len(await journaled(journal, tid)) == 2
    empty = await call(http, path, add_body(admin), key="add-empty")
    assert empty == {"messageIds": [], "error_messages": [], "seq": 2}  # nothing appended


async def test_concurrent_duplicates_are_applied_once(http, journal):
    admin = new_ulid()
    tid = (await call(http, "/v1/threads/create", create_body(admin)))["thread_id"]
    path = f"/v1/threads/{tid}/messages/add"
    answers = await asyncio.gather(
        *(call(http, path, add_body(admin, "x"), key="dup") for _ in range(10))
    )
    assert all(a == answers[0] for a in answers)
    assert len(await journaled(journal, tid)) == 2


async def test_every_command_is_idempotent(http, journal):
    admin, a2, m = new_ulid(), new_ulid(), new_ulid()
    tid = (await call(http, "/v1/threads/create", create_body(admin)))["thread_id"]
    t = f"/v1/threads/{tid}"
    ids = (await call(http, f"{t}/messages/add", add_body(admin, "x", "y")))["messageIds"]
    steps = [
        (f"{t}/administrator-ids/join", {"accountId": admin, "accountIds": [a2], "createAt": 3}),
        (f"{t}/administrator-ids/leave", {"accountId": admin, "accountIds": [a2], "createAt": 4}),
        (f"{t}/member-ids/join", {"accountId": admin, "accountIds": [m], "createAt": 5}),
        (f"{t}/member-ids/leave", {"accountId": admin, "accountIds": [m], "createAt": 6}),
        (f"{t}/messages/remove", {"accountId": admin, "messageIds": ids[:1], "createAt": 7}),
        (f"{t}/destroy", {"accountId": admin, "createAt": 8}),
    ]
    for i, (path, body) in enumerate(steps):
        first = await call(http, path, body, key=f"step-{i}")
        assert await call(http, path, body, key=f"step-{i}") == first, path
    assert len(await journaled(journal, tid)) == 2 + len(steps)
    # after the destroy, the retries still answer what the first attempts did
    assert (await call(http, f"{t}/messages/remove", steps[4][1], key="step-4"))[
        "messageIds"
    ] == ids[:1]
    await call(http, f"{t}/destroy", steps[5][1], key="step-5")
    await call(http, f"{t}/destroy", steps[5][1], key="another", status=404)


async def test_a_key_reused_for_another_body_is_a_422(http, journal):
    admin = new_ulid()
    await call(http, "/v1/threads/create", create_body(admin), key="c")
    assert (
        await call(
            http, "/v1/threads/create", create_body(admin, title="other"), key="c", status=422
        )
        == REUSED
    )
    tid = derive_thread_id(admin, "c")
    path = f"/v1/threads/{tid}/messages/add"
    await call(http, path, add_body(admin, "a"), key="k")
    assert await call(http, path, add_body(admin, "b"), key="k", status=422) == REUSED
    assert await call(http, path, add_body(admin, "a", at=3), key="k", status=422) == REUSED
    assert (
        await call(
            http,
            f"/v1/threads/{tid}/destroy",
            {"accountId": admin, "createAt": 2},
            key="k",
            status=422,
        )
        == REUSED
    )
    assert len(await journaled(journal, tid)) == 2


async def test_a_refused_command_is_decided_again(http):
    admin, outsider = new_ulid(), new_ulid()
    tid = (await call(http, "/v1/threads/create", create_body(admin)))["thread_id"]
    path = f"/v1/threads/{tid}/messages/add"
    await call(http, path, add_body(outsider, "x"), key="k", status=403)
    await call(
        http,
        f"/v1/threads/{tid}/member-ids/join",
        {"accountId": admin, "accountIds": [outsider], "createAt": 3},
    )
    assert len((await call(http, path, add_body(outsider, "x"), key="k"))["messageIds"]) == 1


# --- the key reaches the gateway (fakes) -------------------------------------------------------
async def test_the_key_travels_in_the_command(client, gateway):
    admin = new_ulid()
    resp = await client.post("/v1/threads/create", json=create_body(admin), headers={KEY: "k1"})
    assert resp.status == 200
    command = gateway.commands[-1]
    assert command.idempotency_key == "k1"
    assert command.thread_id == derive_thread_id(admin, "k1")
    resp = await client.post(
        f"/v1/threads/{command.thread_id}/messages/add", json=add_body(admin, "x")
    )
    assert resp.status == 200 and gateway.commands[-1].idempotency_key is None


# --- the document ----------------------------------------------------------------------------
async def test_openapi_documents_the_header_and_the_422(client):
    doc = await (await client.get("/v1/openapi.json")).json()
    posts = [(path, item["post"]) for path, item in doc["paths"].items() if "post" in item]
    assert len(posts) == 10
    for path, op in posts:
        (param,) = [p for p in op["parameters"] if p["name"] == KEY]
        assert param["in"] == "header" and param["required"] is False, path
        assert param["schema"]["maxLength"] == 128
        assert "422" in op["responses"], path
    for item in doc["paths"].values():
        for method, op in item.items():
            if method != "post":
                assert KEY not in {p["name"] for p in op.get("parameters", [])}

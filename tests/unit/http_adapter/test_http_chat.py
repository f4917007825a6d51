"""Edits, read markers, unread counts and cursor pages over the HTTP adapter, through the real
domain (the fakes decide and evolve) and the OpenAPI document."""

from __future__ import annotations

import pytest

from threadweaver.adapters.http import OPENAPI_DOCUMENT, HttpSettings, create_app
from threadweaver.adapters.http.errors import ApiError
from threadweaver.adapters.http.message_cursors import decode, encode
from threadweaver.application.read_your_writes import Executed
from threadweaver.domain.commands import EditMessage, MoveReadMarker


async def edit(api, tid: str, account: str, message: str, text: str, status: int = 200):
    body = {"accountId": account, "messageId": message, "text": text, "createAt": api.at()}
    return await api.post(f"/v1/threads/{tid}/messages/edit", body, status)


async def mark(api, tid: str, account: str, message: str, status: int = 200):
    body = {"accountId": account, "messageId": message, "createAt": api.at()}
    return await api.post(f"/v1/threads/{tid}/read-marker", body, status)


async def bodies(api, tid: str, account: str) -> list[str]:
    data = await api.get(f"/v1/threads/{tid}/messages", account_id=account)
    return [m["body"] for m in data["result"]]


# ---------------------------------------------------------------- edits


async def test_the_sender_edits_a_message(api, fakes, gateway):
    admin, member = fakes.ulid(), fakes.ulid()
    tid = await api.create(admin, [member])
    m1, _ = await api.add(tid, member, "hello", "world")
    data = await edit(api, tid, member, m1.lower(), "hello, edited")
    assert data == {"messageIds": [m1], "error_messages": []}
    assert gateway.commands[-1] == EditMessage(tid, member, m1, "hello, edited", api.now)
    assert await bodies(api, tid, admin) == ["hello, edited", "world"]
    # the same text again changes nothing and answers the same
    assert await edit(api, tid, member, m1, "hello, edited") == data


async def test_edit_refusals(api, fakes):
    admin, member = fakes.ulid(), fakes.ulid()
    tid = await api.create(admin, [member])
    (m1,) = await api.add(tid, member, "hello")
    data = await edit(api, tid, admin, m1, "not mine", 403)
    assert data == {"error_messages": ["The editorId is not the senderId"]}
    data = await edit(api, tid, fakes.ulid(), m1, "x", 403)
    assert data == {"error_messages": ["The editorId is not the member"]}
    data = await edit(api, tid, member, fakes.ulid(), "x", 404)
    assert data == {"error_messages": ["message is not found"]}
    await api.post(
        f"/v1/threads/{tid}/messages/remove",
        {"accountId": member, "messageIds": [m1], "createAt": api.at()},
    )
    data = await edit(api, tid, member, m1, "x", 404)  # a removed message
    assert data == {"error_messages": ["message is not found"]}
    data = await edit(api, fakes.ulid(), member, m1, "x", 404)
    assert data == {"error_messages": ["thread is not found"]}


async def test_edit_validation_names_every_field(api, fakes):
    admin = fakes.ulid()
    tid = await api.create(admin)
    (m1,) = await api.add(tid, admin, "hello")
    data = await edit(api, tid, admin, m1, "y" * 256, 400)
    assert data == {"error_messages": ["text: too long text"]}
    data = await api.post(f"/v1/threads/{tid}/messages/edit", {"text": 5}, 400)
    assert data["error_messages"] == [
        "accountId: is required",
        "messageId: is required",
        "text: must be a string",
        "createAt: is required",
    ]
    data = await api.post(
        "/v1/threads/nope/messages/edit",
        {"accountId": admin, "messageId": "x", "text": "", "createAt": -1},
        400,
    )
    assert [e.split(":")[0] for e in data["error_messages"]] == [
        "thread_id",
        "messageId",
        "createAt",
    ]


async def test_an_edit_with_an_idempotency_key_is_applied_once(api, fakes, gateway):
    admin = fakes.ulid()
    tid = await api.create(admin)
    (m1,) = await api.add(tid, admin, "a")
    body = {"accountId": admin, "messageId": m1, "text": "b", "createAt": api.at()}
    headers = {"Idempotency-Key": "edit-1"}
    first = await api.post(f"/v1/threads/{tid}/messages/edit", body, headers=headers)
    again = await api.post(f"/v1/threads/{tid}/messages/edit", body, headers=headers)
    assert first == again == {"messageIds": [m1], "error_messages": []}
    assert all(c.idempotency_key == "edit-1" for c in gateway.commands[-2:])


# ---------------------------------------------------------------- read markers, unread counts


async def unread(api, tid: str, account: str) -> int:
    one = (await api.get(f"/v1/threads/{tid}", account_id=account))["result"]["unreadCount"]
    listed = (await api.get("/v1/threads", account_id=account))["results"]
    assert [t["unreadCount"] for t in listed if t["id"] == tid] == [one]
    return one


async def test_read_markers_and_unread_counts(api, fakes, gateway):
    admin, member = fakes.ulid(), fakes.ulid()
    tid = await api.create(admin, [member])
    a1, a2, a3 = await api.add(tid, admin, "a1", "a2", "a3")
    (b1,) = await api.add(tid, member, "b1")
    assert await unread(api, tid, member) == 3  # the account's own messages never count
    assert await unread(api, tid, admin) == 1
    assert await mark(api, tid, member, a2) == {"threadId": tid, "error_messages": []}
    assert gateway.commands[-1] == MoveReadMarker(tid, member, a2, api.now)
    assert await unread(api, tid, member) == 1
    # backwards: accepted, nothing changes
    assert await mark(api, tid, member, a1) == {"threadId": tid, "error_messages": []}
    assert await unread(api, tid, member) == 1
    await api.post(
        f"/v1/threads/{tid}/messages/remove",
        {"accountId": admin, "messageIds": [a3], "createAt": api.at()},
    )
    assert await unread(api, tid, member) == 0  # removed messages are not unread
    await mark(api, tid, admin, b1)
    assert await unread(api, tid, admin) == 0


async def test_read_marker_refusals(api, fakes):
    admin = fakes.ulid()
    tid = await api.create(admin)
    (m1,) = await api.add(tid, admin, "a")
    data = await mark(api, tid, fakes.ulid(), m1, 403)
    assert data == {"error_messages": ["The readerId is not the member"]}
    data = await mark(api, tid, admin, fakes.ulid(), 404)
    assert data == {"error_messages": ["message is not found"]}
    data = await api.post(f"/v1/threads/{tid}/read-marker", {"accountId": admin}, 400)
    assert data == {"error_messages": ["messageId: is required", "createAt: is required"]}


class SeqGateway:
    """A gateway whose answers carry the thread's sequence number, as the entities' do."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seq = 0

    async def execute(self, command):
        events = list(await self.inner.execute(command))
        self.seq += len(events)
        return Executed(events, self.seq)


async def test_answers_carry_seq_when_the_gateway_reports_it(make_client, gateway, fakes):
    from tests.unit.http_adapter.fakes import Api

    client = await make_client(commands=SeqGateway(gateway))
    api = Api(client, gateway, None)
    admin = fakes.ulid()
    tid = await api.create(admin)
    (m1,) = await api.add(tid, admin, "a")
    assert (await edit(api, tid, admin, m1, "b"))["seq"] == 3
    assert (await edit(api, tid, admin, m1, "b"))["seq"] == 3  # nothing changed
    assert await mark(api, tid, admin, m1) == {"threadId": tid, "error_messages": [], "seq": 4}


# ---------------------------------------------------------------- cursor pages


async def page(api, tid: str, account: str, cursor: str, limit: int, **extra) -> dict:
    return await api.get(
        f"/v1/threads/{tid}/messages", account_id=account, cursor=cursor, limit=limit, **extra
    )


async def test_cursor_pages_are_stable_while_posting_and_removing(api, fakes):
    admin = fakes.ulid()
    tid = await api.create(admin)
    ids = await api.add(tid, admin, *[f"m{i}" for i in range(5)])
    first = await page(api, tid, admin, "", 2)
    assert set(first) == {"result", "next_cursor", "error_messages"}
    assert [m["id"] for m in first["result"]] == ids[:2]
    new = await api.add(tid, admin, "n0")
    await api.post(
        f"/v1/threads/{tid}/messages/remove",
        {"accountId": admin, "messageIds": [ids[0], ids[3]], "createAt": api.at()},
    )
    second = await page(api, tid, admin, first["next_cursor"], 2)
    assert [m["id"] for m in second["result"]] == [ids[2], ids[4]]
    third = await page(api, tid, admin, second["next_cursor"], 2)
    assert [m["id"] for m in third["result"]] == new and third["next_cursor"] is None
    # offset skips messages after the cursor
    skipped = await page(api, tid, admin, first["next_cursor"], 2, offset=1)
    assert [m["id"] for m in skipped["result"]] == [ids[4], *new]
    # without a cursor the route answers as before: no next_cursor
    plain = await api.get(f"/v1/threads/{tid}/messages", account_id=admin, offset=1, limit=1)
    assert set(plain) == {"result", "error_messages"}
    assert [m["id"] for m in plain["result"]] == [ids[2]]
    await page(api, tid, fakes.ulid(), "", 2, status=404)


@pytest.mark.parametrize("cursor", ["x", "AAAAAAAAAAB", "gAAAAAAAAAA", "AAAAAAAAAAA=", "A" * 12])
async def test_a_malformed_cursor_is_a_400_naming_it(api, fakes, cursor):
    admin = fakes.ulid()
    tid = await api.create(admin)
    data = await page(api, tid, admin, cursor, 10, status=400)
    assert data["error_messages"][0].startswith("cursor: ")


def test_cursors_round_trip() -> None:
    for position in (0, 1, 999, 5 * 1000 + 3, 2**63 - 1):
        assert decode(encode(position)) == position
        assert len(encode(position)) == 11
    assert decode("") is None
    with pytest.raises(ApiError):
        decode(encode(2**63 - 1)[:-1] + "B")


# ---------------------------------------------------------------- the document


def test_the_openapi_document_describes_the_additions() -> None:
    from prometheus_client import CollectorRegistry

    from tests.unit.http_adapter.fakes import FakeGateway, FakeQueries

    gateway = FakeGateway()
    settings = HttpSettings(metrics_registry=CollectorRegistry())
    app = create_app(commands=gateway, queries=FakeQueries(gateway), settings=settings)
    doc = app[OPENAPI_DOCUMENT]
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    edit_op = paths["/v1/threads/{thread_id}/messages/edit"]["post"]
    assert edit_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EditMessageRequest"
    }
    assert schemas["EditMessageRequest"]["required"] == [
        "accountId",
        "messageId",
        "text",
        "createAt",
    ]
    assert schemas["EditMessageRequest"]["properties"]["text"]["maxLength"] == 255
    marker_op = paths["/v1/threads/{thread_id}/read-marker"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in marker_op["parameters"]]
    assert "unreadCount" in schemas["ThreadJson"]["required"]
    assert "next_cursor" in schemas["MessagesResponse"]["properties"]
    listed = paths["/v1/threads/{thread_id}/messages"]["get"]["parameters"]
    assert "cursor" in [p["name"] for p in listed]

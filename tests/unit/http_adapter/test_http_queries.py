"""Query routes: exact field names, visibility (404), all ids, pagination parameters."""

from __future__ import annotations

import pytest

from threadweaver.adapters.http import HttpSettings
from threadweaver.domain.ids import ulid_error

THREAD_KEYS = {
    "id",
    "creatorId",
    "parentThreadId",
    "title",
    "remarks",
    "createdAt",
    "updatedAt",
    "unreadCount",
}
MESSAGE_KEYS = {
    "id",
    "threadId",
    "senderId",
    "type",
    "body",
    "replyMessageId",
    "createdAt",
    "updatedAt",
}


async def test_get_thread(api, fakes):
    admin, parent = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(
        admin, parentThreadId=parent, title="T", remarks="R", createAt=1000
    )
    data = await api.get(f"/v1/threads/{thread_id}", account_id=admin)
    assert data == {
        "result": {
            "id": thread_id,
            "creatorId": admin,
            "parentThreadId": parent,
            "title": "T",
            "remarks": "R",
            "createdAt": 1000,
            "updatedAt": 1000,
            "unreadCount": 0,
        },
        "error_messages": [],
    }


async def test_get_thread_ignores_offset_and_limit(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    await api.get(f"/v1/threads/{thread_id}", account_id=admin, offset="x", limit="-1")


async def test_get_thread_not_visible_is_404(api, fakes):
    admin, stranger = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.get(f"/v1/threads/{thread_id}", 404, account_id=stranger)
    assert data == {"error_messages": ["thread is not found"]}
    data = await api.get(f"/v1/threads/{fakes.ulid()}", 404, account_id=admin)
    assert data == {"error_messages": ["thread is not found"]}


async def test_destroyed_thread_is_not_returned(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    await api.post(f"/v1/threads/{thread_id}/destroy", {"accountId": admin, "createAt": 1})
    await api.get(f"/v1/threads/{thread_id}", 404, account_id=admin)
    assert (await api.get("/v1/threads", account_id=admin))["results"] == []
    for sub in ("administrator-ids", "member-ids", "messages"):
        await api.get(f"/v1/threads/{thread_id}/{sub}", 404, account_id=admin)


async def test_list_threads(api, fakes, queries):
    admin, member = fakes.ulid(), fakes.ulid()
    t1 = await api.create(admin, [member])
    t2 = await api.create(admin)
    data = await api.get("/v1/threads", account_id=admin)
    assert set(data) == {"results", "error_messages"} and data["error_messages"] == []
    assert [t["id"] for t in data["results"]] == [t1, t2]
    assert all(set(t) == THREAD_KEYS for t in data["results"])
    assert queries.calls[-1] == ("list_threads", (admin, 0, 100))
    data = await api.get("/v1/threads", account_id=member)
    assert [t["id"] for t in data["results"]] == [t1]
    data = await api.get("/v1/threads", account_id=admin, offset="1", limit="1")
    assert [t["id"] for t in data["results"]] == [t2]
    assert queries.calls[-1] == ("list_threads", (admin, 1, 1))


async def test_administrator_and_member_ids_return_all_ids(api, fakes, queries):
    admin, a2, m1, m2 = (fakes.ulid() for _ in range(4))
    thread_id = await api.create(admin, [m1, m2])
    await api.post(
        f"/v1/threads/{thread_id}/administrator-ids/join",
        {"accountId": admin, "accountIds": [a2], "createAt": api.at()},
    )
    # a member sees every id, not only its own (upstream filtered on the caller)
    data = await api.get(f"/v1/threads/{thread_id}/administrator-ids", account_id=m1)
    assert data == {"results": [admin, a2], "error_messages": []}
    data = await api.get(f"/v1/threads/{thread_id}/member-ids", account_id=m1)
    assert data == {"results": [m1, m2], "error_messages": []}
    data = await api.get(f"/v1/threads/{thread_id}/member-ids", account_id=admin, offset=1, limit=5)
    assert data == {"results": [m2], "error_messages": []}
    assert queries.calls[-1] == ("list_member_ids", (thread_id, admin, 1, 5))
    await api.get(f"/v1/threads/{thread_id}/member-ids", 404, account_id=fakes.ulid())
    await api.get(f"/v1/threads/{thread_id}/administrator-ids", 404, account_id=fakes.ulid())


async def test_messages_use_singular_result(api, fakes):
    admin, member = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin, [member])
    (m1,) = await api.add(thread_id, member, "ABC")
    await api.post(
        f"/v1/threads/{thread_id}/messages/add",
        {
            "accountId": admin,
            "createAt": 555,
            "messages": [{"replyMessageId": m1, "toAccountIds": [member], "text": "re"}],
        },
    )
    data = await api.get(f"/v1/threads/{thread_id}/messages", account_id=admin)
    assert set(data) == {"result", "error_messages"}
    first, second = data["result"]
    assert set(first) == MESSAGE_KEYS
    assert first["id"] == m1 and first["threadId"] == thread_id and first["senderId"] == member
    assert first["type"] == "text" and first["body"] == "ABC" and first["replyMessageId"] is None
    assert second["replyMessageId"] == m1 and second["createdAt"] == 555
    assert second["updatedAt"] == 555
    data = await api.get(f"/v1/threads/{thread_id}/messages", account_id=admin, limit=1, offset=1)
    assert [m["body"] for m in data["result"]] == ["re"]
    await api.get(f"/v1/threads/{thread_id}/messages", 404, account_id=fakes.ulid())


@pytest.mark.parametrize(
    "path",
    [
        "/v1/threads/{t}",
        "/v1/threads",
        "/v1/threads/{t}/messages",
        "/v1/threads/{t}/member-ids",
        "/v1/threads/{t}/administrator-ids",
    ],
)
async def test_account_id_is_required(api, fakes, path):
    data = await api.get(path.format(t=fakes.ulid()), 400)
    assert data == {"error_messages": ["account_id: is required"]}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"account_id": "nope"}, "account_id: ulidString must be exactly 26 chars long."),
        ({"offset": "-1"}, "offset: must be an integer between 0 and 2147483647"),
        ({"offset": "abc"}, "offset: must be an integer between 0 and 2147483647"),
        ({"offset": "1.5"}, "offset: must be an integer between 0 and 2147483647"),
        ({"offset": "9" * 30}, "offset: must be an integer between 0 and 2147483647"),
        ({"limit": "0"}, "limit: must be an integer between 1 and 1000"),
        ({"limit": "1001"}, "limit: must be an integer between 1 and 1000"),
        ({"limit": ""}, "limit: must be an integer between 1 and 1000"),
        ({"limit": "١"}, "limit: must be an integer between 1 and 1000"),  # arabic-indic digit
    ],
)
async def test_bad_query_parameters(api, fakes, params, message):
    params = {"account_id": fakes.ulid(), **params}
    data = await api.get(f"/v1/threads/{fakes.ulid()}/messages", 400, **params)
    assert data == {"error_messages": [message]}


async def test_all_query_errors_are_reported_together(api):
    data = await api.get("/v1/threads/xyz/member-ids", 400, offset="-", limit="0")
    assert data == {
        "error_messages": [
            "thread_id: ulidString must be exactly 26 chars long.",
            "account_id: is required",
            "offset: must be an integer between 0 and 2147483647",
            "limit: must be an integer between 1 and 1000",
        ]
    }


async def test_limit_defaults_follow_settings(make_client, fakes, gateway, queries, registry):
    client = await make_client(
        settings=HttpSettings(default_limit=7, max_limit=10, metrics_registry=registry)
    )
    api = fakes.Api(client, gateway, queries)
    account = fakes.ulid()
    await api.get("/v1/threads", account_id=account)
    assert queries.calls[-1] == ("list_threads", (account, 0, 7))
    await api.get("/v1/threads", account_id=account, limit=10)
    data = await api.get("/v1/threads", 400, account_id=account, limit=11)
    assert data == {"error_messages": ["limit: must be an integer between 1 and 10"]}


async def test_bad_path_thread_id(api, fakes):
    data = await api.get("/v1/threads/" + "I" * 26, 400, account_id=fakes.ulid())
    assert data == {"error_messages": [f"thread_id: {ulid_error('I' * 26)}"]}

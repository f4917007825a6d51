"""Every validation rule answers 400 with `{"error_messages": [...]}`, each naming its field,
and ALL errors of a request are reported together. Nothing reaches the gateway."""

from __future__ import annotations

import pytest

from threadweaver.domain import limits
from threadweaver.domain.ids import ulid_error

A = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
B = "01BX5ZZKBKACTAV9WEVGEMMVRZ"
T = "01BX5ZZKBKACTAV9WEVGEMMVS0"
LEN = "ulidString must be exactly 26 chars long."
ILLEGAL_U = ulid_error("U" * 26)  # sulky's illegal-character wording, whatever it is
OVERFLOW = "ulidString must not exceed '7ZZZZZZZZZZZZZZZZZZZZZZZZZ'!"
CREATE_AT = "createAt: must be an integer between 0 and 253402300799999 (epoch milliseconds)"
IDS_MAX = f"at most {limits.IDS_PER_REQUEST_LIMIT} items are allowed"

CREATE = {
    "accountId": A,
    "parentThreadId": None,
    "title": "t",
    "remarks": None,
    "administratorIds": [A],
    "memberIds": [],
    "createAt": 1,
}
IDS = {"accountId": A, "accountIds": [B], "createAt": 1}
ADD = {
    "accountId": A,
    "createAt": 1,
    "messages": [{"replyMessageId": None, "toAccountIds": [], "text": "x"}],
}
REMOVE = {"accountId": A, "messageIds": [B], "createAt": 1}
DESTROY = {"accountId": A, "createAt": 1}

MISSING = object()


def patched(base, **changes):
    body = dict(base)
    for key, value in changes.items():
        if value is MISSING:
            body.pop(key, None)
        else:
            body[key] = value
    return body


CASES = [
    # create
    ("create", patched(CREATE, accountId=MISSING), ["accountId: is required"]),
    ("create", patched(CREATE, accountId="x"), [f"accountId: {LEN}"]),
    ("create", patched(CREATE, accountId=5), ["accountId: must be a string"]),
    ("create", patched(CREATE, accountId="U" * 26), [f"accountId: {ILLEGAL_U}"]),
    ("create", patched(CREATE, accountId="8" + "0" * 25), [f"accountId: {OVERFLOW}"]),
    ("create", patched(CREATE, parentThreadId="short"), [f"parentThreadId: {LEN}"]),
    ("create", patched(CREATE, title=MISSING), ["title: is required"]),
    ("create", patched(CREATE, title=5), ["title: must be a string"]),
    ("create", patched(CREATE, title=None), ["title: must be a string"]),
    ("create", patched(CREATE, title="x" * 256), ["title: title is too long"]),
    ("create", patched(CREATE, remarks="x" * 256), ["remarks: remarks is too long"]),
    ("create", patched(CREATE, remarks=["x"]), ["remarks: must be a string"]),
    (
        "create",
        patched(CREATE, administratorIds=[]),
        ["administratorIds: administrator-ids is empty"],
    ),
    ("create", patched(CREATE, administratorIds=MISSING), ["administratorIds: is required"]),
    ("create", patched(CREATE, administratorIds="x"), ["administratorIds: must be an array"]),
    ("create", patched(CREATE, administratorIds=[A, B, "x"]), [f"administratorIds[2]: {LEN}"]),
    ("create", patched(CREATE, administratorIds=[A, 7]), ["administratorIds[1]: must be a string"]),
    (
        "create",
        patched(CREATE, administratorIds=[A] * (limits.IDS_PER_REQUEST_LIMIT + 1)),
        [f"administratorIds: {IDS_MAX}"],
    ),
    ("create", patched(CREATE, memberIds=MISSING), ["memberIds: is required"]),
    ("create", patched(CREATE, memberIds=None), ["memberIds: must be an array"]),
    ("create", patched(CREATE, memberIds=[B, "bad"]), [f"memberIds[1]: {LEN}"]),
    ("create", patched(CREATE, createAt=MISSING), ["createAt: is required"]),
    ("create", patched(CREATE, createAt="abc"), [CREATE_AT]),
    ("create", patched(CREATE, createAt=True), [CREATE_AT]),
    ("create", patched(CREATE, createAt=-1), [CREATE_AT]),
    ("create", patched(CREATE, createAt=1.5), [CREATE_AT]),
    ("create", patched(CREATE, createAt=253402300800000), [CREATE_AT]),
    (
        "create",
        {"title": 5, "accountIds": "x", "createAt": "abc"},
        [
            "accountId: is required",
            "title: must be a string",
            "administratorIds: is required",
            "memberIds: is required",
            CREATE_AT,
        ],
    ),
    # destroy
    ("destroy", patched(DESTROY, accountId=MISSING), ["accountId: is required"]),
    ("destroy", patched(DESTROY, createAt=None), [CREATE_AT]),
    # join/leave
    (
        "administrator-ids/join",
        patched(IDS, accountIds=[]),
        ["accountIds: administrator-ids is empty"],
    ),
    ("administrator-ids/join", patched(IDS, accountIds="x"), ["accountIds: must be an array"]),
    ("administrator-ids/join", patched(IDS, accountIds=[B, B, "x"]), [f"accountIds[2]: {LEN}"]),
    (
        "administrator-ids/join",
        patched(IDS, accountIds=[B] * (limits.IDS_PER_REQUEST_LIMIT + 1)),
        [f"accountIds: {IDS_MAX}"],
    ),
    (
        "administrator-ids/leave",
        patched(IDS, accountIds=[]),
        ["accountIds: administrator-ids is empty"],
    ),
    ("administrator-ids/leave", patched(IDS, accountIds=MISSING), ["accountIds: is required"]),
    (
        "administrator-ids/leave",
        patched(IDS, accountIds=MISSING, administratorIds=[]),
        ["administratorIds: administrator-ids is empty"],
    ),
    (
        "administrator-ids/leave",
        patched(IDS, accountIds=MISSING, administratorIds=["x"]),
        [f"administratorIds[0]: {LEN}"],
    ),
    (
        "administrator-ids/leave",
        patched(IDS, administratorIds=[B]),
        ["administratorIds: give either accountIds or its alias administratorIds, not both"],
    ),
    ("member-ids/join", patched(IDS, accountIds=MISSING), ["accountIds: is required"]),
    ("member-ids/join", patched(IDS, accountIds=[1]), ["accountIds[0]: must be a string"]),
    ("member-ids/leave", patched(IDS, accountIds={"a": 1}), ["accountIds: must be an array"]),
    ("member-ids/leave", patched(IDS, createAt="1"), [CREATE_AT]),
    # add messages
    ("messages/add", patched(ADD, messages=MISSING), ["messages: is required"]),
    ("messages/add", patched(ADD, messages={}), ["messages: must be an array"]),
    (
        "messages/add",
        patched(ADD, messages=[1, None]),
        ["messages[0]: must be an object", "messages[1]: must be an object"],
    ),
    (
        "messages/add",
        patched(ADD, messages=[{"toAccountIds": [], "text": "x" * 256}]),
        ["messages[0].text: too long text"],
    ),
    (
        "messages/add",
        patched(ADD, messages=[{"toAccountIds": []}]),
        ["messages[0].text: is required"],
    ),
    (
        "messages/add",
        patched(ADD, messages=[{"text": "x"}]),
        ["messages[0].toAccountIds: is required"],
    ),
    (
        "messages/add",
        patched(
            ADD,
            messages=[
                {"text": "x", "toAccountIds": []},
                {"text": 1, "toAccountIds": ["q"], "replyMessageId": "r"},
            ],
        ),
        [
            f"messages[1].replyMessageId: {LEN}",
            f"messages[1].toAccountIds[0]: {LEN}",
            "messages[1].text: must be a string",
        ],
    ),
    (
        "messages/add",
        patched(
            ADD,
            messages=[{"text": "x", "toAccountIds": []}] * (limits.MESSAGES_PER_REQUEST_LIMIT + 1),
        ),
        [f"messages: at most {limits.MESSAGES_PER_REQUEST_LIMIT} items are allowed"],
    ),
    (
        "messages/add",
        patched(ADD, accountId="bad", createAt=MISSING),
        [f"accountId: {LEN}", "createAt: is required"],
    ),
    # remove messages
    ("messages/remove", patched(REMOVE, messageIds=MISSING), ["messageIds: is required"]),
    ("messages/remove", patched(REMOVE, messageIds=[B, "x"]), [f"messageIds[1]: {LEN}"]),
    (
        "messages/remove",
        patched(REMOVE, messageIds=[B] * (limits.IDS_PER_REQUEST_LIMIT + 1)),
        [f"messageIds: {IDS_MAX}"],
    ),
]


@pytest.mark.parametrize("route, body, messages", CASES)
async def test_validation_errors(client, gateway, route, body, messages):
    path = "/v1/threads/create" if route == "create" else f"/v1/threads/{T}/{route}"
    resp = await client.post(path, json=body)
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "application/json"
    assert await resp.json() == {"error_messages": messages}
    assert gateway.commands == []


@pytest.mark.parametrize(
    "route",
    [
        "destroy",
        "administrator-ids/join",
        "administrator-ids/leave",
        "member-ids/join",
        "member-ids/leave",
        "messages/add",
        "messages/remove",
    ],
)
async def test_path_thread_id_is_validated_with_the_body(client, gateway, route):
    resp = await client.post(f"/v1/threads/not-a-ulid/{route}", json={"createAt": 1})
    assert resp.status == 400
    messages = (await resp.json())["error_messages"]
    assert messages[0] == f"thread_id: {LEN}"
    assert "accountId: is required" in messages
    assert gateway.commands == []


async def test_integral_float_create_at_is_accepted(api, fakes, gateway):
    admin = fakes.ulid()
    await api.create(admin, createAt=1e3)
    assert gateway.commands[-1].at == 1000


async def test_error_list_is_bounded(client):
    body = patched(CREATE, administratorIds=["x"] * 500)
    resp = await client.post("/v1/threads/create", json=body)
    messages = (await resp.json())["error_messages"]
    assert resp.status == 400 and len(messages) == 101
    assert messages[-1] == "... and 400 more errors"

"""The OpenAPI 3.1 document, built from the route table (routes.py; the router is filled from it
too, so paths, methods and parameters cannot drift from what is served) and from the same limits
the validators in `validation.py` enforce (maxLength, maxItems, minimum/maximum, required)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...application.settings import EntitySettings
from ...application.stream_cursor import PATTERN as STREAM_CURSOR_PATTERN
from ...domain import limits
from .message_cursors import CURSOR, CURSOR_INVALID, CURSOR_MAX_LENGTH, CURSOR_PATTERN
from .validation import (
    CREATE_AT_MAX,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_INVALID,
    IDEMPOTENCY_KEY_PATTERN,
    OFFSET_MAX,
)

if TYPE_CHECKING:
    from .routes import Route
    from .settings import HttpSettings

OPENAPI_VERSION = "3.1.0"
_PATH_PARAM = re.compile(r"{(\w+)}")

ULID_PATTERN = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"
ULID: dict[str, Any] = {
    "type": "string",
    "minLength": 26,
    "maxLength": 26,
    "pattern": ULID_PATTERN,
    "description": "A ULID (26 characters of Crockford base32, any case; answered in upper case).",
    "examples": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"],
}
NULLABLE_ULID: dict[str, Any] = {**ULID, "type": ["string", "null"]}
REF_ULID = {"$ref": "#/components/schemas/Ulid"}
EPOCH_MS = {
    "type": "integer",
    "minimum": 0,
    "maximum": CREATE_AT_MAX,
    "description": "Epoch milliseconds.",
}


def _ids(max_items: int = limits.IDS_PER_REQUEST_LIMIT, min_items: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": REF_ULID, "maxItems": max_items}
    if min_items:
        schema["minItems"] = min_items
    return schema


def _obj(required: Iterable[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties, **extra}


def _ids_request(description: str, non_empty: bool, alias: bool = False) -> dict[str, Any]:
    ids = _ids(min_items=1 if non_empty else 0)
    schema = _obj(
        ["accountId", "accountIds", "createAt"],
        {"accountId": REF_ULID, "accountIds": ids, "createAt": EPOCH_MS},
        description=description,
    )
    if alias:
        # upstream's body names the list `administratorIds`; either name is accepted
        schema["properties"]["administratorIds"] = {
            **ids,
            "description": "Alias of accountIds (upstream's name); give one of the two.",
        }
        schema["required"] = ["accountId", "createAt"]
        schema["oneOf"] = [{"required": ["accountIds"]}, {"required": ["administratorIds"]}]
    return schema


SEQ_MAX = (1 << 63) - 1
SEQ_FIELD: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "description": "The thread's sequence number after the command: give it as `min_seq` to "
    "a query of the thread to read your write (an addition over upstream).",
}


def _schemas(settings: HttpSettings) -> dict[str, Any]:
    thread = _obj(
        [
            "id",
            "creatorId",
            "parentThreadId",
            "title",
            "remarks",
            "createdAt",
            "updatedAt",
            "unreadCount",
        ],
        {
            "id": REF_ULID,
            "creatorId": REF_ULID,
            "parentThreadId": NULLABLE_ULID,
            "title": {"type": "string"},
            "remarks": {"type": ["string", "null"]},
            "createdAt": {"type": "integer"},
            "updatedAt": {"type": "integer"},
            "unreadCount": {
                "type": "integer",
                "minimum": 0,
                "description": "Addition: live messages after the account's read marker that "
                "other accounts sent (all of them without a marker).",
            },
        },
        description="Upstream's ThreadJson plus unreadCount.",
    )
    message = _obj(
        ["id", "threadId", "senderId", "type", "body", "createdAt", "updatedAt"],
        {
            "id": REF_ULID,
            "threadId": REF_ULID,
            "senderId": REF_ULID,
            "type": {"type": "string", "enum": ["text"]},
            "body": {"type": "string"},
            "replyMessageId": {
                **NULLABLE_ULID,
                "description": "Addition over upstream's ThreadMessageJson.",
            },
            "createdAt": {"type": "integer"},
            "updatedAt": {"type": "integer"},
        },
        description="Upstream's ThreadMessageJson plus replyMessageId.",
    )
    no_errors = {"type": "array", "items": {"type": "string"}, "maxItems": 0}
    seq = SEQ_FIELD
    new_message = _obj(
        ["toAccountIds", "text"],
        {
            "replyMessageId": NULLABLE_ULID,
            "toAccountIds": _ids(),
            "text": {"type": "string", "maxLength": limits.TEXT_MAX_LENGTH},
        },
    )
    return {
        "Ulid": ULID,
        "ErrorResponse": _obj(
            ["error_messages"],
            {"error_messages": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        ),
        "CreateThreadRequest": _obj(
            ["accountId", "title", "administratorIds", "memberIds", "createAt"],
            {
                "accountId": REF_ULID,
                "parentThreadId": NULLABLE_ULID,
                "title": {"type": "string", "maxLength": limits.TITLE_MAX_LENGTH},
                "remarks": {"type": ["string", "null"], "maxLength": limits.REMARKS_MAX_LENGTH},
                "administratorIds": _ids(min_items=1),
                "memberIds": _ids(),
                "createAt": EPOCH_MS,
            },
        ),
        "DestroyThreadRequest": _obj(
            ["accountId", "createAt"], {"accountId": REF_ULID, "createAt": EPOCH_MS}
        ),
        "JoinAdministratorIdsRequest": _ids_request("Administrators to add.", True),
        "LeaveAdministratorIdsRequest": _ids_request(
            "Administrators to remove (the last one cannot leave).", True, alias=True
        ),
        "MemberIdsRequest": _ids_request("Members to add or remove.", False),
        "AddMessagesRequest": _obj(
            ["accountId", "messages", "createAt"],
            {
                "accountId": REF_ULID,
                "messages": {
                    "type": "array",
                    "items": new_message,
                    "maxItems": limits.MESSAGES_PER_REQUEST_LIMIT,
                },
                "createAt": EPOCH_MS,
            },
        ),
        "EditMessageRequest": _obj(
            ["accountId", "messageId", "text", "createAt"],
            {
                "accountId": REF_ULID,
                "messageId": REF_ULID,
                "text": {"type": "string", "maxLength": limits.TEXT_MAX_LENGTH},
                "createAt": EPOCH_MS,
            },
        ),
        "ReadMarkerRequest": _obj(
            ["accountId", "messageId", "createAt"],
            {"accountId": REF_ULID, "messageId": REF_ULID, "createAt": EPOCH_MS},
        ),
        "RemoveMessagesRequest": _obj(
            ["accountId", "messageIds", "createAt"],
            {"accountId": REF_ULID, "messageIds": _ids(), "createAt": EPOCH_MS},
        ),
        "CreateThreadResponse": _obj(
            ["thread_id", "error_messages"],
            {"thread_id": REF_ULID, "error_messages": no_errors, "seq": seq},
        ),
        "ThreadIdResponse": _obj(
            ["threadId", "error_messages"],
            {"threadId": REF_ULID, "error_messages": no_errors, "seq": seq},
        ),
        "MessageIdsResponse": _obj(
            ["messageIds", "error_messages"],
            {
                "messageIds": {"type": "array", "items": REF_ULID},
                "error_messages": no_errors,
                "seq": seq,
            },
        ),
        "ThreadJson": thread,
        "ThreadMessageJson": message,
        "ThreadResponse": _obj(
            ["result", "error_messages"],
            {"result": {"$ref": "#/components/schemas/ThreadJson"}, "error_messages": no_errors},
        ),
        "ThreadsResponse": _obj(
            ["results", "error_messages"],
            {
                "results": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ThreadJson"},
                    "maxItems": settings.max_limit,
                },
                "error_messages": no_errors,
            },
        ),
        "IdsResponse": _obj(
            ["results", "error_messages"],
            {
                "results": {"type": "array", "items": REF_ULID, "maxItems": settings.max_limit},
                "error_messages": no_errors,
            },
        ),
        "MessagesResponse": _obj(
            ["result", "error_messages"],
            {
                "result": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ThreadMessageJson"},
                    "maxItems": settings.max_limit,
                },
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Only with `cursor`: the cursor of the next page; null at "
                    "the end.",
                },
                "error_messages": no_errors,
            },
        ),
        "Welcome": _obj(
            ["name", "api", "openapi"],
            {"name": {"type": "string"}, "api": {"type": "string"}, "openapi": {"type": "string"}},
        ),
        "OpenApiDocument": _obj(
            ["openapi", "info", "paths"],
            {
                "openapi": {"type": "string"},
                "info": {"type": "object"},
                "paths": {"type": "object"},
            },
        ),
        "Liveness": _obj(["status"], {"status": {"type": "string", "enum": ["live"]}}),
        "Readiness": _obj(
            ["status", "checks", "failing"],
            {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
                "failing": {"type": "array", "items": {"type": "string"}},
                "error_messages": {"type": "array", "items": {"type": "string"}},
            },
        ),
    }


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying (when the cause is transient).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


def _unauthorized() -> dict[str, Any]:
    response = _error(
        "Only with `--auth jwt`: the bearer token is missing, malformed, expired "
        "or not acceptable; the message says why."
    )
    response["headers"] = {
        "WWW-Authenticate": {
            "description": '`Bearer realm="thread-weaver"`, with `error` and '
            "`error_description` when a token was given.",
            "schema": {"type": "string"},
        }
    }
    return response


ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: _error("Invalid request: every offending field is named (`field: message`)."),
    401: _unauthorized(),
    403: _error(
        "The account lacks the role the command needs (upstream's message); or, with "
        "`--auth jwt`, `accountId`/`account_id` is not the token's subject "
        "(`accountId does not match the authenticated subject`)."
    ),
    404: _error(
        "No such thread, or it is destroyed, or not visible to the account "
        "(`thread is not found`, `already removed the thread`)."
    ),
    409: _error("The command contradicts the thread's state (limits, last administrator)."),
    413: _error("The request body is larger than the server's limit."),
    415: _error("The Content-Type is not application/json."),
    429: _error(
        "Too many streams of this account are open on this member; retry after Retry-After.",
        retry_after=True,
    ),
    422: _error(
        "The Idempotency-Key was used before, by the same account on the same thread, "
        "for a different request (`Idempotency-Key was used for a different request`)."
    ),
    500: _error("There was an internal server error."),
    503: _error(
        "Try again later: shard being handed off, journal unavailable, or time-out.",
        retry_after=True,
    ),
}


_KEYS = EntitySettings()  # the defaults of --idempotency-keys and --idempotency-window
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": IDEMPOTENCY_KEY_PATTERN,
        "examples": ["5b0f3c9e-4c53-4a0e-9d1c-6c1c2b7d9f10"],
    },
    "description": "Makes the command idempotent: a retry with the same key (same account, same "
    "thread, same body) answers the first result instead of applying again. "
    f"Keys are remembered per thread (by default the last {_KEYS.idempotency_keys}, for "
    f"{_KEYS.idempotency_window / 3600:g} h). A key "
    f"{IDEMPOTENCY_KEY_INVALID}; see docs/api.md.",
}
BEARER_SCHEME = "bearerAuth"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Optional: only a server started with `--auth jwt` requires it (HS256 "
        "secret or RS256 JWKS). The token's `sub` must be the acting account "
        "(`accountId`/`account_id`).",
    }
}


CURSOR_PARAMETER: dict[str, Any] = {
    "name": CURSOR,
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": CURSOR_MAX_LENGTH, "pattern": CURSOR_PATTERN},
    "description": "Keyset pages, stable while messages are posted and removed: empty for the "
    "first page, then the `next_cursor` of the previous answer (opaque); `offset` then skips "
    f"messages after it. A cursor {CURSOR_INVALID} (400 otherwise).",
}
_SEQ_SCHEMA = {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}
SEQ_PARAMETERS: dict[str, dict[str, Any]] = {
    "min_seq": {
        "name": "min_seq",
        "in": "query",
        "required": False,
        "schema": _SEQ_SCHEMA,
        "description": "Read your writes: answer once the read model has applied this seq of "
        "the thread (a command's `seq`); 503 with Retry-After if it does not in time.",
    },
    "after": {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": _SEQ_SCHEMA,
        "description": "Resume after this seq (0: from the start); `Last-Event-ID` wins.",
    },
}
LAST_EVENT_ID_PARAMETERS: dict[str, dict[str, Any]] = {
    "threadEvents": {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "description": "The id (seq) of the last event received: the stream resumes after it.",
    },
    "accountEvents": {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "examples": ["a1."]},
        "description": "The id of the last event received (opaque, of the form "
        f"`{STREAM_CURSOR_PATTERN}`): the stream resumes after it in every thread. An id the server "
        "cannot read starts from the live end.",
    },
}
_PATH_DESCRIPTIONS = {"thread_id": "The thread's ULID.", "account_id": "The account's ULID."}


def _parameters(route: Route, settings: HttpSettings) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": REF_ULID,
            "description": _PATH_DESCRIPTIONS.get(name, "A ULID."),
        }
        for name in _PATH_PARAM.findall(route.path)
    ]
    if route.method == "POST" and route.tag == "commands":
        params.append(IDEMPOTENCY_KEY_PARAMETER)
    if route.operation_id in LAST_EVENT_ID_PARAMETERS:
        params.append(LAST_EVENT_ID_PARAMETERS[route.operation_id])
    for name in route.query:
        if name == "account_id":
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": True,
                    "schema": REF_ULID,
                    "description": "The acting account (with `--auth jwt`: the token's subject).",
                }
            )
        elif name == "offset":
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": OFFSET_MAX,
                        "default": 0,
                    },
                }
            )
        elif name == "limit":
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": settings.max_limit,
                        "default": settings.default_limit,
                    },
                }
            )
        elif name in SEQ_PARAMETERS:
            params.append(SEQ_PARAMETERS[name])
        else:
            raise ValueError(f"undocumented query parameter {name!r} in {route.path}")
    if route.response == "MessagesResponse":  # message pages take a cursor (keyset pages)
        params.append(CURSOR_PARAMETER)
    return params


def _ok(route: Route) -> dict[str, Any]:
    if route.content_type == "application/json":
        schema: dict[str, Any] = {"$ref": f"#/components/schemas/{route.response}"}
    else:
        schema = {"type": "string"}
    return {"description": "OK", "content": {route.content_type: {"schema": schema}}}


def build_document(
    routes: Iterable[Route], settings: HttpSettings, version: str = "0.1.0"
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
        }
        if route.description:
            operation["description"] = route.description
        params = _parameters(route, settings)
        if params:
            operation["parameters"] = params
        if route.request:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{route.request}"}
                    }
                },
            }
        responses: dict[str, Any] = {"200": _ok(route)}
        for status in route.errors:
            if status == 503 and route.response == "Readiness":
                responses["503"] = {
                    "description": "Not ready: the failing checks are named.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
                    },
                }
            else:
                responses[str(status)] = ERROR_RESPONSES[status]
        operation["responses"] = responses
        if not route.open:  # optional: `{}` allows anonymous calls (`--auth none`)
            operation["security"] = [{BEARER_SCHEME: []}, {}]
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "thread-weaver",
            "version": version,
            "description": "Event-sourced chat threads. Wire-compatible with j5ik2o/thread-weaver's "
            "/v1 API, with the deliberate fixes listed in docs/api.md.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "commands"},
            {"name": "queries"},
            {"name": "streams"},
            {"name": "system"},
        ],
        "paths": paths,
        "components": {"schemas": _schemas(settings), "securitySchemes": SECURITY_SCHEMES},
    }

"""The internal API: the endpoint other members of a cluster forward commands to, an aiohttp
sub-app mounted at `routes.INTERNAL_PREFIX` (`POST /internal/v1/execute`).

A member that receives a command for a shard it does not own sends the already-built domain
command once to the owner (adapters/forwarding.py is that client); the owner runs it only if it
serves the shard itself (one hop, no loops) and answers the events, or why not:

| outcome                                   | status | body                               |
|-------------------------------------------|--------|------------------------------------|
| the command ran                           | 200    | `{"events": [...], "seq": n}`      |
| the body is not a forwarded command       | 400    | `{"error": ...}`                   |
| the peer token is missing or wrong        | 403    | `{"error": "forbidden"}`           |
| the domain refused it                     | 409    | `{"refusal": ...}` (codec.py)      |
| this member does not serve the shard      | 503    | `{"error", "refused": true}`, `Retry-After` |
| the journal failed (it may have run)      | 503    | `{"error": ...}`, `Retry-After: 1` |

With a peer token configured, a request must carry it (`Authorization: Bearer <token>`); the
bearer-JWT check of `--auth jwt` (auth.py) leaves these paths to it.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from aiohttp import web

from ...application.codec import command_from_json, error_to_json, events_to_json
from ...application.gateway import ShardUnavailable
from ...application.ports import JournalError
from ...application.read_your_writes import seq_of
from ...domain import Command, Event
from .routes import INTERNAL_PREFIX, INTERNAL_ROUTES, add_routes
from .wire import json_response


class ForwardedCommands(Protocol):
    """What runs forwarded commands (application.sharding.Member)."""

    async def execute(self, command: Command, *, forwarded: bool = False) -> list[Event]: ...


class _Internal:
    __slots__ = ("_member", "_token")

    def __init__(self, member: ForwardedCommands, token: str) -> None:
        self._member = member
        self._token = token.encode()

    async def execute(self, request: web.Request) -> web.Response:
        if self._token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), self._token):
                return json_response({"error": "forbidden"}, 403)
        try:
            command = command_from_json(orjson.loads(await request.read())["command"])
        except (ValueError, KeyError, TypeError) as exc:
            return json_response({"error": f"malformed forwarded command: {exc}"}, 400)
        try:
            events = await self._member.execute(command, forwarded=True)
        except ShardUnavailable as exc:  # refused before running: the sender may re-route
            return json_response(
                {"error": str(exc), "refused": True},
                503,
                {"Retry-After": str(max(1, round(exc.retry_after)))},
            )
        except JournalError as exc:
            return json_response({"error": str(exc)}, 503, {"Retry-After": "1"})
        except Exception as exc:
            refusal = error_to_json(exc)
            if refusal is None:
                raise
            return json_response({"refusal": refusal}, 409)
        return json_response({"events": events_to_json(events), "seq": seq_of(events)})


def internal_app(member: ForwardedCommands, token: str = "") -> web.Application:
    """The internal API as a sub-app; `token` is the peer token ("" accepts any caller)."""
    app = web.Application()
    groups: dict[str, Any] = {"internal": _Internal(member, token)}
    add_routes(app.router, INTERNAL_ROUTES, groups)
    return app


def add_internal_api(app: web.Application, member: ForwardedCommands, token: str = "") -> None:
    """Mount the internal API on the HTTP API's app (create_app), whose middlewares it runs in."""
    app.add_subapp(INTERNAL_PREFIX, internal_app(member, token))


def internal_server_app(
    member: ForwardedCommands,
    token: str = "",
    middlewares: Sequence[Any] = (),
) -> web.Application:
    """The internal API alone, for a listener of its own (`--internal-port`): the same paths,
    so that a NetworkPolicy can open it to the cluster's members only."""
    app = web.Application(middlewares=list(middlewares))
    app.add_subapp(INTERNAL_PREFIX, internal_app(member, token))
    return app

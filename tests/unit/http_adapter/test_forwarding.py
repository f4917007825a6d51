"""The internal API (the forwarding endpoint) and its client, over real HTTP on loopback (aiohttp's test
server): what the sender learns from each kind of refusal."""

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from threadweaver.adapters.forwarding import HttpPeerClient
from threadweaver.adapters.http import add_internal_api, internal_server_app
from threadweaver.application.gateway import ForwardRefused, ShardUnavailable
from threadweaver.application.ports import JournalUnavailable
from threadweaver.domain import CreateThread, new_ulid

A = new_ulid()


class Owner:
    def __init__(self, outcome):
        self.outcome = outcome
        self.calls = []

    async def execute(self, command, *, forwarded=False):
        self.calls.append(forwarded)
        raise self.outcome


async def forward_to(owner, *, own_listener=False):
    if own_listener:  # --internal-port: the internal API alone on a listener of its own
        app = internal_server_app(owner, token="t")
    else:
        app = web.Application()
        add_internal_api(app, owner, token="t")
    server = TestServer(app)
    await server.start_server()
    client = HttpPeerClient("sender", token="t")
    try:
        return await client.forward(
            f"{server.host}:{server.port}",
            CreateThread(new_ulid(), A, "t", (A,), (), None, None, 1),
        )
    finally:
        await client.close()
        await server.close()


async def test_a_shard_the_receiver_does_not_serve_is_refused_unrun():
    owner = Owner(ShardUnavailable("shard 3 is not served here (owner a)"))
    with pytest.raises(ForwardRefused, match="not served here"):
        await forward_to(owner)
    assert owner.calls == [True]  # marked as forwarded: one hop only


async def test_a_journal_outage_at_the_owner_is_unavailable_but_not_a_refusal():
    # the command may have been applied: the sender must not run it again elsewhere
    with pytest.raises(ShardUnavailable) as info:
        await forward_to(Owner(JournalUnavailable("throttled")))
    assert not isinstance(info.value, ForwardRefused)


@pytest.mark.parametrize("own_listener", [False, True], ids=["on --port", "on --internal-port"])
async def test_the_internal_api_answers_on_its_own_listener_as_on_the_public_one(own_listener):
    owner = Owner(ShardUnavailable("shard 3 is not served here (owner a)"))
    with pytest.raises(ForwardRefused, match="not served here"):
        await forward_to(owner, own_listener=own_listener)
    assert owner.calls == [True]

"""The inbound port for commands: what the HTTP adapter (or any other driver) calls.

`execute` runs one domain command on its aggregate and returns the events it caused (an empty
list for a command that changed nothing). Implementations: the local `EntityManager`, and in a
sharded cluster a router that runs local shards and refuses (or forwards) others.
"""

from __future__ import annotations

from typing import Protocol

from ..domain import Command, Event


class ShardUnavailable(Exception):
    """The aggregate's shard is being handed off or not served here yet: retry shortly (503)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ForwardRefused(ShardUnavailable):
    """The member a command was forwarded to refused it without running it (it does not serve
    the shard, or not yet): the sender may route it again once its own shard map is newer."""


class NotOwner(Exception):
    """The aggregate's shard is owned by another member; the driver should forward to `address`."""

    def __init__(self, owner: str, address: str | None) -> None:
        super().__init__(f"shard owned by {owner}")
        self.owner = owner
        self.address = address


class CommandGateway(Protocol):
    async def execute(self, command: Command) -> list[Event]:
        """Raises DomainError, ValidationError, ShardUnavailable, NotOwner or JournalError."""
        ...

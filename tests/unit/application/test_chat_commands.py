"""The chat commands (edit, read marker) in the application: the forwarding codec carries them
between members, and the entities run them like every other command (idempotent retries, state
rebuilt by replay in another process), on the real SQLite journal."""

from __future__ import annotations

import orjson

from threadweaver.application.codec import command_from_json, command_to_json
from threadweaver.application.entities import EntityManager, EntitySettings
from threadweaver.domain import (
    AddMessages,
    CreateThread,
    EditMessage,
    MessageEdited,
    MoveReadMarker,
    NewMessage,
    ReadMarkerMoved,
    new_ulid,
)

ADMIN, MEMBER = new_ulid(), new_ulid()


def test_the_forwarding_codec_round_trips_the_chat_commands() -> None:
    tid, mid = new_ulid(), new_ulid()
    for command in (
        EditMessage(tid, MEMBER, mid, "new text ✓", 5),
        EditMessage(tid, MEMBER, mid, "", 6, idempotency_key="e:1"),
        MoveReadMarker(tid, ADMIN, mid, 7),
        MoveReadMarker(tid, ADMIN, mid, 8, idempotency_key="m.2"),
    ):
        wire = orjson.loads(orjson.dumps({"command": command_to_json(command)}))["command"]
        assert command_from_json(wire) == command


async def test_entities_run_edits_and_markers_once_and_replay_them(journal) -> None:
    tid, m1, m2 = new_ulid(), new_ulid(), new_ulid()
    settings = EntitySettings(snapshot_every=0)
    mgr = EntityManager(journal, settings)
    await mgr.execute(CreateThread(tid, ADMIN, "t", (ADMIN,), (MEMBER,), at=1))
    await mgr.execute(AddMessages(tid, MEMBER, (NewMessage(m1, "a"), NewMessage(m2, "b")), at=2))
    edit = EditMessage(tid, MEMBER, m1, "a, edited", 3, idempotency_key="edit-1")
    first = await mgr.execute(edit)
    assert first == [MessageEdited(tid, MEMBER, 3, m1, "a, edited")]
    assert await mgr.execute(edit) == first  # the retry answers the first result
    assert mgr.stats.idempotent_replays == 1
    marker = MoveReadMarker(tid, ADMIN, m2, 4, idempotency_key="mark-1")
    assert await mgr.execute(marker) == [ReadMarkerMoved(tid, ADMIN, 4, m2)]
    assert await mgr.execute(marker) == [ReadMarkerMoved(tid, ADMIN, 4, m2)]

    fresh = EntityManager(journal, settings)  # another process: replays the journal
    assert await fresh.execute(MoveReadMarker(tid, ADMIN, m1, 5)) == []  # backwards
    assert await fresh.execute(EditMessage(tid, MEMBER, m1, "a, edited", 6)) == []  # same text
    assert fresh.stats.events_replayed == 4

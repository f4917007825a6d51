"""A runtime's objects over real SQLite stores, instrumented into a registry of its own: what
`Runtime` builds, without its settings (the collector reads only these attributes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from threadweaver.adapters.journal.sqlite import SqliteJournal
from threadweaver.adapters.readmodel import ReadModelSettings, SqlReadModel
from threadweaver.application.entities import EntityManager
from threadweaver.application.sharding import Member, ShardingSettings
from threadweaver.observability import install

try:  # where the settings dataclasses live moved once; either is fine here
    from threadweaver.application.settings import ProjectorSettings  # type: ignore[import-not-found]
except ImportError:
    from threadweaver.application.projector import ProjectorSettings

SHARDS = 16


@dataclass
class FakeRuntime:
    journal: Any
    read_model: Any
    entities: Any
    member: Any
    lease: Any = None
    collector: Any = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
async def make_runtime(tmp_path):
    """make_runtime(name, peers=None) -> an instrumented FakeRuntime sharing one journal and
    read model with the others made by the same test (as members of one cluster would)."""
    journal = SqliteJournal(tmp_path / "j.db", shards=SHARDS, synchronous="off")
    read_model = SqlReadModel(ReadModelSettings.sqlite(tmp_path / "rm.db"))
    made: list[FakeRuntime] = []
    await journal.start()
    await read_model.migrate()

    def make(name: str = "local", peers: Any = None, **entity_settings: Any) -> FakeRuntime:
        entities = EntityManager(journal, writer=name)
        member = Member(
            ShardingSettings(member=name, handoff_wait=0.3, address_template="{member}"),
            entities,
            journal,
            read_model,
            ProjectorSettings(poll_interval=0.05),
            peers=peers,
        )
        runtime = FakeRuntime(journal, read_model, entities, member)
        runtime.collector = install(runtime, runtime.registry)  # type: ignore[arg-type]
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.member.stop()
    await journal.close()
    await read_model.close()

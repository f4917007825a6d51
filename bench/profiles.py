"""How big and how long each workload runs: `full` (make bench) and `quick` (make bench-quick,
under two minutes end to end)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # 1. HTTP commands
    http_runs: int  # interleaved runs (bare, full, normal); figures are medians
    http_duration: float  # seconds per wrk run
    http_warmup: float  # seconds of creates before the measured runs of a server
    http_connections: int
    hot_threads: int  # "hot": few threads, many posts
    cold_threads: int  # "cold": many threads, loaded from the journal on first touch
    http_drain_timeout: float  # max wait for the read model to catch up after a measurement
    # 2. Journal appends
    journal_runs: int
    journal_events: int
    journal_aggregates: int
    journal_concurrency: tuple[int, ...]
    # 3. Projection lag
    lag_runs: int
    lag_duration: float
    lag_probe_rate: float  # creates per second whose visibility is timed
    lag_background_connections: int
    lag_background_delay_ms: int  # per-connection pause of the steady background load
    lag_levels: tuple[str, ...]  # "steady" (bounded background load), "saturated" (flat out)
    # 4. Recovery
    recovery_runs: int
    recovery_messages: int
    # 5. Memory
    memory_threads: int
    memory_bound: int  # --max-entities of the bounded server
    memory_in_process: int  # entities of the in-process (tracemalloc) measurement
    memory_max_fill_s: float  # bound on creating the threads (fewer are reported if hit)
    # profile of workload 1's hot path
    profile_duration: float
    # 1. the runtimes measured: sync modes, and full-nometrics (sync full without the metrics,
    # bench/nometrics_server.py: what they cost)
    http_modes: tuple[str, ...] = ("full", "normal")
    # 6. production backends (DynamoDB API: dynalite, MySQL: MariaDB) and range handoff
    prod_runs: int = 1  # A: interleaved runs (embedded, production, ...)
    prod_duration: float = 2.0  # A: seconds per wrk run
    prod_shards: tuple[int, ...] = (1024,)  # A: a production server per shard count
    prod_cold_threads: int = 0  # A: threads seeded for the cold posts (0: no cold posts)
    prod_profile_duration: float = 0.0  # A: pyinstrument on the production runtime (0: not)
    handoff_shards: int = 1024  # B: the cluster's shard count
    handoff_moves: int = 2  # B: range moves, alternately A -> B and B -> A
    handoff_rate: float = 40.0  # B: commands per second sent (open loop), half to each
    handoff_settle: float = 2.0  # B: seconds of load before and after each move
    handoff_warmup: float = 2.0  # B: seconds of load before the first move
    handoff_idle: float = 0.0  # B: seconds the idle members' CPU is measured (0: not)
    prod_idle_seconds: float = 3.0  # A: idle DynamoDB requests/s measured over (0: not)
    clients_rounds: int = 2  # C: interleaved rounds of the client micro-benchmark
    clients_calls: int = 1000  # C: calls per variant and round
    clients_concurrency: int = 8  # C: calls in flight
    # the parts of workload 6 to run (`--set prod_parts=commands,lag`): A commands, D lag (the
    # projection lag on the production backends), B handoff, C clients
    prod_parts: tuple[str, ...] = ("commands", "lag", "handoff", "clients")
    # 8. live streams (w8_streams.py)
    stream_threads: int = 100  # A, B: threads the subscribers are spread over
    stream_idle: int = 10_000  # A: idle subscribers
    stream_active: int = 1_000  # B: subscribers while posts are sent
    stream_rate: float = 500.0  # B: posts per second (open loop)
    stream_seconds: float = 10.0  # B, C: seconds of posts
    stream_fanout: int = 1_000  # C: subscribers of one thread
    stream_fanout_rate: float = 10.0  # C: posts per second to it (x subscribers: deliveries)
    stream_production: bool = True  # B, C also on dynalite + MariaDB

    def as_dict(self) -> dict:
        d = asdict(self)
        d["journal_concurrency"] = list(self.journal_concurrency)
        d["lag_levels"] = list(self.lag_levels)
        d["prod_shards"] = list(self.prod_shards)
        d["prod_parts"] = list(self.prod_parts)
        d["http_modes"] = list(self.http_modes)
        return d


FULL = Profile(
    name="full",
    http_runs=3,
    http_duration=10.0,
    http_warmup=2.0,
    http_connections=64,
    hot_threads=16,
    cold_threads=45_000,
    http_drain_timeout=120.0,
    journal_runs=3,
    journal_events=12_000,
    journal_aggregates=600,
    journal_concurrency=(1, 16, 64),
    lag_runs=3,
    lag_duration=20.0,
    lag_probe_rate=50.0,
    lag_background_connections=16,
    lag_background_delay_ms=100,
    lag_levels=("steady", "saturated"),
    recovery_runs=5,
    recovery_messages=5_000,
    memory_threads=100_000,
    memory_bound=10_000,
    memory_in_process=20_000,
    memory_max_fill_s=900.0,
    profile_duration=10.0,
    prod_runs=3,
    prod_duration=10.0,
    prod_shards=(1024, 64),
    prod_cold_threads=3_000,
    prod_profile_duration=10.0,
    prod_idle_seconds=15.0,
    clients_rounds=5,
    clients_calls=4000,
    handoff_shards=1024,
    handoff_moves=6,
    handoff_rate=25.0,
    handoff_settle=4.0,
    handoff_warmup=5.0,
    handoff_idle=10.0,
)

QUICK = Profile(
    name="quick",
    http_runs=2,
    http_duration=2.0,
    http_warmup=0.0,
    http_connections=64,
    hot_threads=16,
    cold_threads=3_000,
    http_drain_timeout=0.0,
    journal_runs=2,
    journal_events=600,
    journal_aggregates=60,
    journal_concurrency=(64,),
    lag_runs=1,
    lag_duration=4.0,
    lag_probe_rate=50.0,
    lag_background_connections=16,
    lag_background_delay_ms=100,
    lag_levels=("steady",),
    recovery_runs=3,
    recovery_messages=5_000,
    memory_threads=20_000,
    memory_bound=2_000,
    memory_in_process=3_000,
    memory_max_fill_s=45.0,
    profile_duration=0.0,
    # quick (a smoke test, to stay under two minutes): 64 shards, so that a production runtime's
    # start-up read of its range (a query per shard) takes no time; full runs use the default
    # 1024 (and 64 beside it)
    prod_runs=1,
    prod_duration=1.0,
    prod_shards=(64,),
    prod_cold_threads=0,
    handoff_shards=64,
    handoff_moves=2,
    handoff_rate=25.0,
    handoff_settle=0.5,
    handoff_warmup=0.5,
    stream_idle=500,
    stream_active=100,
    stream_rate=50.0,
    stream_seconds=2.0,
    stream_fanout=100,
    stream_fanout_rate=10.0,
    stream_production=False,
)

PROFILES = {"full": FULL, "quick": QUICK}


def override(profile: Profile, assignments: list[str]) -> Profile:
    """`profile` with `NAME=VALUE` assignments (`python -m bench --set prod_runs=2`), each
    value parsed as the field's type (a tuple from comma-separated items)."""
    changes: dict[str, object] = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or name not in profile.__dataclass_fields__ or name == "name":
            raise ValueError(f"--set {text!r}: not NAME=VALUE of a profile field")
        current = getattr(profile, name)
        if isinstance(current, tuple):
            kind = type(current[0]) if current else str
            changes[name] = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        elif isinstance(current, bool):  # bool("false") is True
            if value.strip().lower() not in ("true", "false"):
                raise ValueError(f"--set {text!r}: {name} is true or false")
            changes[name] = value.strip().lower() == "true"
        else:
            changes[name] = type(current)(value)
    return Profile(**{**profile.__dict__, **changes})

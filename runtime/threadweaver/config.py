"""Runtime settings: one frozen `Settings` of nested frozen dataclasses, one per subsystem (the
model of Kopf's `OperatorSettings`). Each configurable field is declared once, in its subsystem's
dataclass, with its default and help text (`setting`, application/settings.py):

| Settings.  | dataclass         | declared in               | flags, e.g.                            |
|------------|-------------------|---------------------------|----------------------------------------|
| server     | ServerSettings    | here                      | --host, --port                         |
| storage    | StorageSettings   | here                      | --journal, --read-model, --shards      |
| logging    | LoggingSettings   | here                      | --log-level, --log-format              |
| tracing    | TracingSettings   | here                      | --otel-endpoint, --otel-sample-ratio   |
| entities   | EntitySettings    | application/settings.py   | --snapshot-every, --idempotency-keys   |
| projection | ProjectorSettings | application/settings.py   | --projection-batch-size                |
| streams    | StreamSettings    | application/settings.py   | --stream-buffer, --read-your-writes-timeout |
| http       | HttpSettings      | adapters/http/settings.py | --request-timeout, --max-body-bytes    |
| cluster    | ClusterSettings   | here                      | --cluster, --peer-token-file           |
| auth       | AuthSettings      | adapters/http/settings.py | --auth, --jwt-hs256-secret-file        |

`Settings.options()` lists the configurable fields as `Option`s; cli.py turns each into a flag
`--NAME` whose default comes from the environment variable `THREADWEAVER_NAME` (every flag has
one; see `threadweaver serve --help`). `Settings.resolved()` validates and returns a new value
with the defaults that depend on other settings filled in (the journal and read-model URLs from
the data directory, the read-model updaters' poll interval from the journal, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .adapters.http.settings import AUTH_MODES, AuthSettings, HttpSettings
from .application.settings import (
    SETTING,
    EntitySettings,
    ProjectorSettings,
    Setting,
    StreamSettings,
    setting,
)
from .shards.hashing import DEFAULT_SHARDS

if TYPE_CHECKING:
    from .adapters.http.auth import JwtVerifier

ENV_PREFIX = "THREADWEAVER_"
#: the read-model updaters' poll interval on DynamoDB, where a full read of a range costs one
#: index query per shard (elsewhere ProjectorSettings' default)
DYNAMODB_POLL_INTERVAL = 1.0  # one Query of the change notes per poll
#: key of a group's title (the section of `--help`) in its `Settings` field's metadata
TITLE = "threadweaver.settings.title"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the flag and its env variable."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where the HTTP API listens."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8080, "TCP port of the HTTP API")


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The event journal and the read model."""

    data_dir: Path = setting(Path(".data"), "directory of the embedded SQLite files")
    # sqlite:///PATH | dynamodb://HOST:PORT?region=..&table-prefix=..
    journal: str = setting(
        "",
        "event journal URL: sqlite:///PATH (default: DATA_DIR/journal.db) or "
        "dynamodb://HOST:PORT?region=R&table-prefix=P (no host: AWS)",
        derived=True,
    )
    # sqlite+aiosqlite:///PATH | mysql+aiomysql://USER@HOST/DB
    read_model: str = setting(
        "",
        "read-model URL: sqlite+aiosqlite:///PATH (default: "
        "DATA_DIR/readmodel.db) or mysql+aiomysql://USER:PASS@HOST:PORT/DB",
        derived=True,
    )
    read_model_password_file: str = setting(
        "", "file holding the read-model password (a mounted Secret); overrides the URL's"
    )
    shards: int = setting(DEFAULT_SHARDS, "number of shards, fixed when the journal is created")
    # None: yes for SQLite, no for MySQL (the operator's Job migrates)
    auto_migrate: bool | None = setting(
        None,
        "migrate the read-model schema at start "
        "(default: true for SQLite, false for MySQL, where the operator's Job migrates)",
        value_type=bool,
        derived=True,
        commands=("serve",),
    )
    sync_mode: str = setting(
        "full",
        "SQLite journal durability: full (fsync every commit; "
        "survives power loss), normal (survives a process crash), off (tests only)",
        commands=("serve",),
    )

    @property
    def sqlite_journal_path(self) -> Path:
        """sqlite:///relative/path or sqlite:////absolute/path, as SQLAlchemy spells them."""
        prefix = "sqlite:///"
        if not self.journal.startswith(prefix):
            raise ConfigError(f"--journal: expected {prefix}PATH, got {self.journal!r}")
        return Path(self.journal[len(prefix) :])

    def filled(self) -> StorageSettings:
        """The URLs (with the password file's password) and auto_migrate filled in."""
        journal = self.journal or f"sqlite:///{self.data_dir / 'journal.db'}"
        read_model = self.read_model or f"sqlite+aiosqlite:///{self.data_dir / 'readmodel.db'}"
        if self.read_model_password_file:
            read_model = _with_password(read_model, self.read_model_password_file)
        auto_migrate = self.auto_migrate
        if auto_migrate is None:
            auto_migrate = read_model.startswith("sqlite")
        return replace(self, journal=journal, read_model=read_model, auto_migrate=auto_migrate)

    def check(self) -> None:
        scheme = urlsplit(self.journal).scheme
        if scheme not in ("sqlite", "dynamodb"):
            raise ConfigError(
                f"--journal / THREADWEAVER_JOURNAL: unsupported scheme {scheme!r}"
                " (use sqlite:///PATH or dynamodb://HOST:PORT?region=R&table-prefix=P)"
            )
        if not (
            self.read_model.startswith("sqlite+aiosqlite:")
            or self.read_model.startswith("mysql+aiomysql:")
        ):
            raise ConfigError(
                "--read-model / THREADWEAVER_READ_MODEL: use sqlite+aiosqlite:///PATH"
                " or mysql+aiomysql://USER:PASS@HOST:PORT/DB"
            )
        if not 1 <= self.shards <= 65536:
            raise ConfigError("--shards / THREADWEAVER_SHARDS: must be between 1 and 65536")
        if self.sync_mode not in ("full", "normal", "off"):
            raise ConfigError("--sync-mode / THREADWEAVER_SYNC_MODE: one of full, normal, off")


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = setting("info", "debug, info, warning or error", name="log-level")
    format: str = setting("text", "text or json", name="log-format")


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry tracing (adapters/otel_tracing.py); off without an endpoint."""

    otel_endpoint: str = setting(
        "",
        "OTLP/HTTP collector endpoint, e.g. http://otel-collector:4318 (spans go to "
        "ENDPOINT/v1/traces); empty: tracing off",
        name="otel-endpoint",
    )
    otel_sample_ratio: float = setting(
        1.0,
        "fraction of traces recorded (a forwarded command follows the sender's decision)",
        name="otel-sample-ratio",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.otel_endpoint)

    def check(self) -> None:
        if not 0.0 <= self.otel_sample_ratio <= 1.0:
            raise ConfigError(
                "--otel-sample-ratio / THREADWEAVER_OTEL_SAMPLE_RATIO: must be between 0 and 1"
            )


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """This member, and in cluster mode the cluster it joins. No cluster name: embedded, this
    member owns every shard."""

    member_name: str = setting(
        default_factory=lambda: os.environ.get("HOSTNAME", "local"),
        help="this member's name (the pod name in Kubernetes)",
    )
    name: str = setting(
        "",
        "ThreadWeaverCluster name: join that cluster's shard map "
        "(empty: embedded, this process owns every shard)",
        name="cluster",
    )
    namespace: str = setting("", "namespace of the cluster's shard map and leases")
    kubeconfig: str = setting("", "kubeconfig file (default: in-cluster config)")
    peer_address: str = setting(
        "",
        "host:port other members use to forward requests here "
        "(default: pod DNS through the headless Service)",
    )
    peer_address_template: str = setting(
        "",
        "address of another member when the shard map "
        "names none, with {member} (default: {member}.CLUSTER-headless.NAMESPACE.svc:PORT)",
        derived=True,
    )
    internal_port: int = setting(
        0,
        "TCP port of the members' internal API (forwarded commands), on --host; "
        "0: served on --port beside the public API",
    )
    peer_token_file: str = setting(
        "", "file with the shared secret that forwarded commands carry (a mounted Secret)"
    )
    # the shared secret of the internal API, read from peer_token_file by filled()
    peer_token: str = field(default="", repr=False)
    lease_duration: int = setting(
        15, "seconds without renewal after which the operator considers this member gone"
    )
    lease_renew_every: float = setting(5.0, "seconds between lease renewals")

    @property
    def embedded(self) -> bool:
        return not self.name

    def filled(self, port: int) -> ClusterSettings:
        """The peer token read from its file, and the default peer address template."""
        token = self.peer_token
        if self.peer_token_file:
            try:
                token = Path(self.peer_token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"--peer-token-file: cannot read {self.peer_token_file}: {exc}"
                ) from exc
        template = self.peer_address_template
        if self.name and not template and self.namespace:
            port = self.internal_port or port  # forwarded commands go to the internal API
            template = f"{{member}}.{self.name}-headless.{self.namespace}.svc:{port}"
        return replace(self, peer_token=token, peer_address_template=template)


@dataclass(frozen=True, slots=True)
class TableSettings:
    """`threadweaver create-tables`' own options (not a setting of the runtime)."""

    billing_mode: str = setting("PAY_PER_REQUEST", "PAY_PER_REQUEST or PROVISIONED")
    read_capacity: int | None = setting(
        None, "read capacity units (PROVISIONED only)", value_type=int
    )
    write_capacity: int | None = setting(
        None, "write capacity units (PROVISIONED only)", value_type=int
    )
    timeout: float = setting(300.0, "seconds to wait until the tables are ACTIVE")
    no_wait: bool = setting(False, "return without waiting until the tables are ACTIVE")
    point_in_time_recovery: bool = setting(
        False, "enable point-in-time recovery on the journal table (backups)"
    )


@dataclass(frozen=True, slots=True)
class Option:
    """One configurable field: `Settings.<group>.<field>` (group "" for a command's own)."""

    group: str
    field: str
    setting: Setting
    default: Any
    title: str = ""

    @property
    def name(self) -> str:
        return self.setting.name or self.field.replace("_", "-")

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        """The attribute of argparse's namespace, and the key of `Settings.from_options`."""
        return self.name.replace("-", "_")

    @property
    def value_type(self) -> type:
        return self.setting.value_type or type(self.default)


def options_of(instance: Any, group: str = "", title: str = "") -> Iterator[Option]:
    """The configurable fields of one settings dataclass, with `instance`'s values as defaults."""
    for f in fields(instance):
        declared = f.metadata.get(SETTING)
        if declared is not None:
            yield Option(group, f.name, declared, getattr(instance, f.name), title)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `threadweaver serve` is configured with (see the module docstring)."""

    server: ServerSettings = field(
        default_factory=ServerSettings, metadata={TITLE: "HTTP listener"}
    )
    storage: StorageSettings = field(
        default_factory=StorageSettings, metadata={TITLE: "journal and read model"}
    )
    logging: LoggingSettings = field(default_factory=LoggingSettings, metadata={TITLE: "logging"})
    tracing: TracingSettings = field(default_factory=TracingSettings, metadata={TITLE: "tracing"})
    entities: EntitySettings = field(
        default_factory=EntitySettings, metadata={TITLE: "thread aggregates"}
    )
    http: HttpSettings = field(default_factory=HttpSettings, metadata={TITLE: "HTTP API"})
    # poll interval 0: chosen from the journal by resolved()
    projection: ProjectorSettings = field(
        default_factory=lambda: ProjectorSettings(poll_interval=0.0),
        metadata={TITLE: "read-model updaters"},
    )
    streams: StreamSettings = field(
        default_factory=StreamSettings, metadata={TITLE: "live streams and read your writes"}
    )
    cluster: ClusterSettings = field(
        default_factory=ClusterSettings, metadata={TITLE: "cluster membership"}
    )
    auth: AuthSettings = field(default_factory=AuthSettings, metadata={TITLE: "authentication"})

    @classmethod
    def options(cls) -> Iterator[Option]:
        """Every configurable field, group by group, with its default."""
        defaults = cls()
        for group in fields(cls):
            yield from options_of(getattr(defaults, group.name), group.name, group.metadata[TITLE])

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> Settings:
        """The defaults, with the options named by their `Option.dest` set to `values`."""
        by_dest = {option.dest: option for option in cls.options()}
        unknown = sorted(set(values) - set(by_dest))
        if unknown:
            raise TypeError(f"not a setting: {', '.join(unknown)}")
        changes: dict[str, dict[str, Any]] = {}
        for dest, value in values.items():
            option = by_dest[dest]
            changes.setdefault(option.group, {})[option.field] = value
        defaults = cls()
        groups = {name: replace(getattr(defaults, name), **kw) for name, kw in changes.items()}
        return replace(defaults, **groups)

    def resolved(self) -> Settings:
        """A new value with the defaults that depend on other settings filled in, validated
        (ConfigError names the flag). Resolving a resolved value again changes nothing."""
        storage = self.storage.filled()
        cluster = self.cluster.filled(self.server.port)
        projection = self.projection
        if projection.poll_interval <= 0:
            poll = (
                DYNAMODB_POLL_INTERVAL
                if storage.journal.startswith("dynamodb:")
                else ProjectorSettings().poll_interval
            )
            projection = replace(projection, poll_interval=poll)
        settings = replace(self, storage=storage, cluster=cluster, projection=projection)
        settings._check()
        return settings

    def _check(self) -> None:
        self.storage.check()
        self.tracing.check()
        if not 0 < self.server.port < 65536:
            raise ConfigError("--port / THREADWEAVER_PORT: must be a TCP port")
        internal = self.cluster.internal_port
        if internal and not (0 < internal < 65536 and internal != self.server.port):
            raise ConfigError(
                "--internal-port / THREADWEAVER_INTERNAL_PORT: a TCP port other than --port "
                "(or 0 to serve the internal API on --port)"
            )
        if self.entities.idempotency_keys < 0:
            raise ConfigError("--idempotency-keys / THREADWEAVER_IDEMPOTENCY_KEYS: must be >= 0")
        if self.entities.idempotency_window <= 0:
            raise ConfigError(
                "--idempotency-window / THREADWEAVER_IDEMPOTENCY_WINDOW: must be "
                "a positive number of seconds"
            )
        self._check_streams()
        auth = self.auth
        if auth.mode not in AUTH_MODES:
            raise ConfigError("--auth / THREADWEAVER_AUTH: none or jwt")
        if not auth.enabled:
            if auth.jwt_hs256_secret_file or auth.jwt_jwks_file:
                raise ConfigError(
                    "--jwt-hs256-secret-file / --jwt-jwks-file are given but "
                    "--auth / THREADWEAVER_AUTH is none: set it to jwt (or drop "
                    "the key file) so that the API is not left open by mistake"
                )
            return
        self.jwt_verifier()  # reads and checks the key file now: fail at start, not later

    def _check_streams(self) -> None:
        streams = self.streams
        for name, value, low in (
            ("stream-buffer", streams.stream_buffer, 1),
            ("streams-per-account", streams.streams_per_account, 1),
            ("stream-account-threads", streams.stream_account_threads, 1),
        ):
            if value < low:
                env = ENV_PREFIX + name.upper().replace("-", "_")
                raise ConfigError(f"--{name} / {env}: must be at least {low}")
        for name, seconds in (
            ("stream-heartbeat", streams.stream_heartbeat),
            ("stream-account-refresh", streams.stream_account_refresh),
            ("read-your-writes-timeout", streams.read_your_writes_timeout),
        ):
            if seconds <= 0:
                env = ENV_PREFIX + name.upper().replace("-", "_")
                raise ConfigError(f"--{name} / {env}: must be a positive number of seconds")
        if streams.stream_max_duration < 0:
            raise ConfigError(
                "--stream-max-duration / THREADWEAVER_STREAM_MAX_DURATION: must be >= 0"
            )

    def jwt_verifier(self) -> JwtVerifier:
        """The verifier of `--auth jwt` (adapters.http.auth.JwtVerifier), from the key file."""
        from .adapters.http.auth import AuthConfigError, JwtVerifier

        auth = self.auth
        try:
            return JwtVerifier.from_files(
                hs256_secret_file=auth.jwt_hs256_secret_file,
                jwks_file=auth.jwt_jwks_file,
                issuer=auth.jwt_issuer,
                audience=auth.jwt_audience,
            )
        except AuthConfigError as exc:
            raise ConfigError(str(exc)) from None


def _with_password(url: str, password_file: str) -> str:
    import sqlalchemy as sa

    try:
        password = Path(password_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"--read-model-password-file: cannot read {password_file}: {exc}"
        ) from exc
    return sa.engine.make_url(url).set(password=password).render_as_string(hide_password=False)

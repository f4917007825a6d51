"""Runtime settings: one dataclass, filled from command-line flags whose defaults come from
`THREADWEAVER_*` environment variables (every flag has one; see `threadweaver serve --help`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .shards.hashing import DEFAULT_SHARDS

if TYPE_CHECKING:
    from .adapters.http.auth import JwtVerifier


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the flag and its env variable."""


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".data")
    journal: str = ""  # sqlite:///path | dynamodb://host:port?region=..&table-prefix=..
    read_model: str = ""  # sqlite+aiosqlite:///path | mysql+aiomysql://user@host/db
    read_model_password_file: str = ""
    auto_migrate: bool | None = None  # default: yes for SQLite, no for MySQL (the operator's Job)
    shards: int = DEFAULT_SHARDS
    sync_mode: str = "full"
    snapshot_every: int = 100
    passivate_after: float = 120.0
    max_entities: int = 100_000
    request_timeout: float = 20.0
    max_body_bytes: int = 1 << 20
    projection_batch_size: int = 500
    projection_poll_interval: float = 0.0  # 0: 1 s on SQLite, 10 s on DynamoDB (a full read
    # costs one index query per shard there)
    log_level: str = "info"
    log_format: str = "text"
    member_name: str = field(default_factory=lambda: os.environ.get("HOSTNAME", "local"))
    # cluster mode (sharding issue): empty cluster = embedded, one member owns every shard
    cluster: str = ""
    namespace: str = ""
    kubeconfig: str = ""
    peer_address: str = ""  # how other members reach this one (host:port)
    peer_address_template: str = ""  # e.g. {member}.NAME-headless.NS.svc:8080 (default below)
    peer_token: str = ""  # shared secret of the internal forwarding endpoint
    peer_token_file: str = ""
    lease_duration: int = 15
    lease_renew_every: float = 5.0
    # idempotent commands (Idempotency-Key) and authentication (docs/api.md)
    idempotency_keys: int = 1000  # keys remembered per thread (0: Idempotency-Key ignored)
    idempotency_window: float = 86_400.0  # seconds a key is remembered
    auth: str = "none"  # none | jwt
    jwt_hs256_secret_file: str = ""  # exactly one of these two with auth=jwt
    jwt_jwks_file: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""

    def resolved(self) -> Settings:
        """Fill the defaults that depend on other settings, and validate."""
        if not self.journal:
            self.journal = f"sqlite:///{self.data_dir / 'journal.db'}"
        if not self.read_model:
            self.read_model = f"sqlite+aiosqlite:///{self.data_dir / 'readmodel.db'}"
        if self.read_model_password_file:
            self.read_model = _with_password(self.read_model, self.read_model_password_file)
        if self.peer_token_file:
            try:
                self.peer_token = Path(self.peer_token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"--peer-token-file: cannot read {self.peer_token_file}: {exc}"
                ) from exc
        if self.cluster and not self.peer_address_template and self.namespace:
            self.peer_address_template = (
                f"{{member}}.{self.cluster}-headless.{self.namespace}.svc:{self.port}"
            )
        if self.projection_poll_interval <= 0:
            self.projection_poll_interval = 10.0 if self.journal.startswith("dynamodb:") else 1.0
        if self.auto_migrate is None:
            self.auto_migrate = self.read_model.startswith("sqlite")
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
        if not 0 < self.port < 65536:
            raise ConfigError("--port / THREADWEAVER_PORT: must be a TCP port")
        self._check_idempotency_and_auth()
        return self

    def _check_idempotency_and_auth(self) -> None:
        if self.idempotency_keys < 0:
            raise ConfigError("--idempotency-keys / THREADWEAVER_IDEMPOTENCY_KEYS: must be >= 0")
        if self.idempotency_window <= 0:
            raise ConfigError(
                "--idempotency-window / THREADWEAVER_IDEMPOTENCY_WINDOW: must be "
                "a positive number of seconds"
            )
        if self.auth not in ("none", "jwt"):
            raise ConfigError("--auth / THREADWEAVER_AUTH: none or jwt")
        if self.auth == "none":
            if self.jwt_hs256_secret_file or self.jwt_jwks_file:
                raise ConfigError(
                    "--jwt-hs256-secret-file / --jwt-jwks-file are given but "
                    "--auth / THREADWEAVER_AUTH is none: set it to jwt (or drop "
                    "the key file) so that the API is not left open by mistake"
                )
            return
        self.jwt_verifier()  # reads and checks the key file now: fail at start, not later

    def jwt_verifier(self) -> JwtVerifier:
        """The verifier of `--auth jwt` (adapters.http.auth.JwtVerifier), from the key file."""
        from .adapters.http.auth import AuthConfigError, JwtVerifier

        try:
            return JwtVerifier.from_files(
                hs256_secret_file=self.jwt_hs256_secret_file,
                jwks_file=self.jwt_jwks_file,
                issuer=self.jwt_issuer,
                audience=self.jwt_audience,
            )
        except AuthConfigError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def sqlite_journal_path(self) -> Path:
        """sqlite:///relative/path or sqlite:////absolute/path, as SQLAlchemy spells them."""
        prefix = "sqlite:///"
        if not self.journal.startswith(prefix):
            raise ConfigError(f"--journal: expected {prefix}PATH, got {self.journal!r}")
        return Path(self.journal[len(prefix) :])


def _with_password(url: str, password_file: str) -> str:
    import sqlalchemy as sa

    try:
        password = Path(password_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"--read-model-password-file: cannot read {password_file}: {exc}"
        ) from exc
    return sa.engine.make_url(url).set(password=password).render_as_string(hide_password=False)

"""The ThreadWeaverCluster spec as a typed, defaulted value.

The API server applies the CRD's defaults, but the operator does not rely on them: objects
written before a default existed, or built in tests, get the same defaults here, declared once as
the dataclasses' field defaults (tests/unit/test_settings.py checks that they equal the CRD's,
and the runtime's where a field sets a runtime flag). Checks that the schema cannot express (or
that must not crash the operator if the schema is bypassed) are reported by
:func:`ClusterSpec.problems` and end up in a condition and an Event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from threadweaver.shards import DEFAULT_SHARDS, database_problem

from . import names
from .projection_lag import ProjectionsSpec, projections_spec
from .spec_operations import (
    NetworkSpec,
    OperationsSpecError,
    RebalancePolicy,
    UpgradeSpec,
    network_spec,
    rebalance_policy,
    upgrade_spec,
)

__all__ = [
    "AuthSpec",
    "ClusterSpec",
    "DynamoDBSpec",
    "MonitoringSpec",
    "MySQLSpec",
    "SecretKeyRef",
    "SpecError",
    "TracingSpec",
]

DEFAULT_PORT = 8080
AUTH_MODES = ("none", "jwt")
DEFAULT_HS256_KEY = "secret"
DEFAULT_JWKS_KEY = "jwks.json"


class SpecError(ValueError):
    """A spec the operator cannot act on (message names the field)."""


@dataclass(frozen=True)
class DynamoDBSpec:
    endpoint: str = ""
    region: str = "us-east-1"
    table_prefix: str = ""
    create_tables: bool = True
    billing_mode: str = "PAY_PER_REQUEST"
    read_capacity: int | None = None
    write_capacity: int | None = None
    credentials_secret: str | None = None
    access_key_id_key: str = "access-key-id"
    secret_access_key_key: str = "secret-access-key"


@dataclass(frozen=True)
class MySQLSpec:
    host: str = ""
    port: int = 3306
    database: str = "threadweaver"
    user: str = "threadweaver"
    password_secret: str | None = None
    password_key: str = "password"
    migrate: bool = True


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Secret in the cluster's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class AuthSpec:
    """``spec.auth``: the runtime's ``--auth`` and its ``--jwt-*`` settings.

    ``jwt_given`` records whether ``spec.auth.jwt`` was present at all, so that a ``jwt`` block
    with mode ``none`` (an API left open by mistake) is refused, as the runtime refuses a key
    file without ``--auth jwt``."""

    mode: str = "none"
    jwt_given: bool = False
    hs256_secret: SecretKeyRef | None = None
    jwks_secret: SecretKeyRef | None = None
    issuer: str = ""
    audience: str = ""

    @property
    def enabled(self) -> bool:
        return self.mode == "jwt"

    @property
    def secret_ref(self) -> SecretKeyRef | None:
        """The one referenced key (only meaningful for a valid spec with mode jwt)."""
        return self.hs256_secret or self.jwks_secret

    @property
    def secret_ref_field(self) -> str:
        """The spec path of :attr:`secret_ref`, for messages."""
        return "spec.auth.jwt." + ("hs256SecretRef" if self.hs256_secret else "jwksSecretRef")

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.mode not in AUTH_MODES:
            out.append(f"spec.auth.mode: one of {', '.join(AUTH_MODES)}, got {self.mode!r}")
            return out
        if not self.enabled:
            if self.jwt_given:
                out.append(
                    "spec.auth.jwt: given but spec.auth.mode is none: set mode jwt (or drop jwt) "
                    "so that the API is not left open by mistake"
                )
            return out
        if not self.jwt_given:
            out.append("spec.auth.jwt: required with mode jwt (hs256SecretRef or jwksSecretRef)")
            return out
        if self.hs256_secret and self.jwks_secret:
            out.append("spec.auth.jwt: exactly one of hs256SecretRef or jwksSecretRef, not both")
        elif not (self.hs256_secret or self.jwks_secret):
            out.append("spec.auth.jwt: exactly one of hs256SecretRef or jwksSecretRef is required")
        for ref, path in (
            (self.hs256_secret, "spec.auth.jwt.hs256SecretRef"),
            (self.jwks_secret, "spec.auth.jwt.jwksSecretRef"),
        ):
            if ref is not None and not ref.name:
                out.append(f"{path}.name: required")
            if ref is not None and not ref.key:
                out.append(f"{path}.key: must not be empty")
        return out


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    namespace: str
    image: str
    replicas: int = 3
    image_pull_policy: str | None = None
    shards: int = DEFAULT_SHARDS
    dynamodb: DynamoDBSpec = field(default_factory=DynamoDBSpec)
    mysql: MySQLSpec = field(default_factory=MySQLSpec)
    passivation_timeout_seconds: int = 120
    resources: Mapping[str, Any] = field(default_factory=dict)
    service_type: str = "ClusterIP"
    port: int = DEFAULT_PORT
    max_ranges_per_round: int = 8
    deletion_policy: str = "Retain"
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    auth: AuthSpec = field(default_factory=AuthSpec)
    monitoring: MonitoringSpec = field(default_factory=lambda: MonitoringSpec())
    tracing: TracingSpec = field(default_factory=lambda: TracingSpec())
    # spec.rebalance.mode/autoApproveFailover and spec.network (spec_operations.py)
    rebalance_policy: RebalancePolicy = field(default_factory=RebalancePolicy)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    upgrade: UpgradeSpec = field(default_factory=UpgradeSpec)  # spec.upgrade (replay_gate.py)
    # spec.projections (projection_lag.py)
    projections: ProjectionsSpec = field(default_factory=ProjectionsSpec)
    # spec.readModel.rebuild: a new token rebuilds the read model into database_<token>
    read_model_rebuild: str = ""

    # -- parsing ------------------------------------------------------------------------------

    @classmethod
    def from_resource(
        cls, name: str, namespace: str, spec: Mapping[str, Any] | None
    ) -> ClusterSpec:
        """Parse a CR's spec, applying the CRD defaults; raises :class:`SpecError` for values of
        the wrong type (a schema bypass), never ``KeyError``/``TypeError``."""
        spec = dict(spec or {})
        d = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        dd, md = DynamoDBSpec(), MySQLSpec()
        try:
            journal = _obj(spec.get("journal"), "spec.journal")
            ddb = _obj(journal.get("dynamodb"), "spec.journal.dynamodb")
            creds = (
                _obj(ddb.get("credentialsSecret"), "spec.journal.dynamodb.credentialsSecret")
                or None
            )
            rm = _obj(spec.get("readModel"), "spec.readModel")
            my = _obj(rm.get("mysql"), "spec.readModel.mysql")
            pw = _obj(my.get("passwordSecret"), "spec.readModel.mysql.passwordSecret") or None
            service = _obj(spec.get("service"), "spec.service")
            rebalance = _obj(spec.get("rebalance"), "spec.rebalance")
            return cls(
                name=name,
                namespace=namespace,
                image=_str(spec.get("image", ""), "spec.image"),
                replicas=_int(spec.get("replicas", d["replicas"]), "spec.replicas"),
                image_pull_policy=spec.get("imagePullPolicy") or None,
                shards=_int(spec.get("shards", d["shards"]), "spec.shards"),
                dynamodb=DynamoDBSpec(
                    endpoint=_str(
                        ddb.get("endpoint", dd.endpoint) or "", "spec.journal.dynamodb.endpoint"
                    ),
                    region=_str(ddb.get("region") or dd.region, "spec.journal.dynamodb.region"),
                    table_prefix=_str(
                        ddb.get("tablePrefix") or name, "spec.journal.dynamodb.tablePrefix"
                    ),
                    create_tables=_bool(
                        ddb.get("createTables", dd.create_tables),
                        "spec.journal.dynamodb.createTables",
                    ),
                    billing_mode=_str(
                        ddb.get("billingMode") or dd.billing_mode,
                        "spec.journal.dynamodb.billingMode",
                    ),
                    read_capacity=_opt_int(
                        ddb.get("readCapacity"), "spec.journal.dynamodb.readCapacity"
                    ),
                    write_capacity=_opt_int(
                        ddb.get("writeCapacity"), "spec.journal.dynamodb.writeCapacity"
                    ),
                    credentials_secret=_str(
                        creds["name"], "spec.journal.dynamodb.credentialsSecret.name"
                    )
                    if creds and creds.get("name")
                    else None,
                    access_key_id_key=_str(
                        (creds or {}).get("accessKeyIdKey") or dd.access_key_id_key,
                        "accessKeyIdKey",
                    ),
                    secret_access_key_key=_str(
                        (creds or {}).get("secretAccessKeyKey") or dd.secret_access_key_key,
                        "secretAccessKeyKey",
                    ),
                ),
                mysql=MySQLSpec(
                    host=_str(my.get("host", md.host) or "", "spec.readModel.mysql.host"),
                    port=_int(my.get("port", md.port), "spec.readModel.mysql.port"),
                    database=_str(
                        my.get("database") or md.database, "spec.readModel.mysql.database"
                    ),
                    user=_str(my.get("user") or md.user, "spec.readModel.mysql.user"),
                    password_secret=_str(pw["name"], "spec.readModel.mysql.passwordSecret.name")
                    if pw and pw.get("name")
                    else None,
                    password_key=_str(
                        (pw or {}).get("key") or md.password_key,
                        "spec.readModel.mysql.passwordSecret.key",
                    ),
                    migrate=_bool(my.get("migrate", md.migrate), "spec.readModel.mysql.migrate"),
                ),
                passivation_timeout_seconds=_int(
                    spec.get("passivationTimeoutSeconds", d["passivation_timeout_seconds"]),
                    "spec.passivationTimeoutSeconds",
                ),
                resources=_obj(spec.get("resources"), "spec.resources"),
                service_type=_str(service.get("type") or d["service_type"], "spec.service.type"),
                port=_int(service.get("port", d["port"]), "spec.service.port"),
                max_ranges_per_round=_int(
                    rebalance.get("maxRangesPerRound", d["max_ranges_per_round"]),
                    "spec.rebalance.maxRangesPerRound",
                ),
                deletion_policy=_str(
                    spec.get("deletionPolicy") or d["deletion_policy"], "spec.deletionPolicy"
                ),
                pod_annotations={
                    str(k): str(v)
                    for k, v in _obj(spec.get("podAnnotations"), "spec.podAnnotations").items()
                },
                node_selector={
                    str(k): str(v)
                    for k, v in _obj(spec.get("nodeSelector"), "spec.nodeSelector").items()
                },
                tolerations=tuple(
                    _obj(t, "spec.tolerations[]")
                    for t in _list(spec.get("tolerations"), "spec.tolerations")
                ),
                auth=_auth(spec.get("auth")),
                monitoring=_monitoring(spec.get("monitoring")),
                tracing=_tracing(spec.get("tracing")),
                rebalance_policy=rebalance_policy(rebalance),
                network=network_spec(spec.get("network")),
                upgrade=upgrade_spec(spec.get("upgrade")),
                projections=projections_spec(spec.get("projections")),
                read_model_rebuild=_str(rm.get("rebuild") or "", "spec.readModel.rebuild"),
            )
        except OperationsSpecError as exc:
            raise SpecError(str(exc)) from None
        except (KeyError, TypeError, AttributeError) as exc:  # pragma: no cover - defensive
            raise SpecError(f"spec: {exc}") from None

    # -- semantic validation ------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Everything that makes this spec impossible to run, as messages naming the field."""
        out: list[str] = []
        problem = names.name_problem(self.name)
        if problem:
            out.append(f"metadata.name: {problem}")
        if not self.image.strip():
            out.append("spec.image: must not be empty")
        if self.replicas < 0:
            out.append("spec.replicas: must be >= 0")
        if not 1 <= self.shards <= 65536:
            out.append("spec.shards: must be between 1 and 65536")
        if self.replicas > self.shards:
            out.append(
                f"spec.replicas: {self.replicas} members for {self.shards} shards would leave members without shards"
            )
        if not self.mysql.host:
            out.append("spec.readModel.mysql.host: required")
        if not 0 < self.mysql.port < 65536:
            out.append("spec.readModel.mysql.port: must be a TCP port")
        if not 0 < self.port < 65536:
            out.append("spec.service.port: must be a TCP port")
        if self.service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            out.append("spec.service.type: one of ClusterIP, NodePort, LoadBalancer")
        if self.deletion_policy not in ("Retain", "Delete"):
            out.append("spec.deletionPolicy: one of Retain, Delete")
        if self.max_ranges_per_round < 1:
            out.append("spec.rebalance.maxRangesPerRound: must be >= 1")
        if self.passivation_timeout_seconds < 1:
            out.append("spec.passivationTimeoutSeconds: must be >= 1")
        d = self.dynamodb
        if d.endpoint:
            parts = urlsplit(d.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                out.append(f"spec.journal.dynamodb.endpoint: {d.endpoint!r} is not an http(s) URL")
            else:
                try:
                    _ = parts.port  # raises ValueError for a port that is not a number
                except ValueError:
                    out.append(
                        f"spec.journal.dynamodb.endpoint: {d.endpoint!r} has an invalid port"
                    )
        if d.billing_mode not in ("PAY_PER_REQUEST", "PROVISIONED"):
            out.append("spec.journal.dynamodb.billingMode: PAY_PER_REQUEST or PROVISIONED")
        if d.billing_mode == "PROVISIONED" and not (d.read_capacity and d.write_capacity):
            out.append(
                "spec.journal.dynamodb: billingMode PROVISIONED needs readCapacity and writeCapacity"
            )
        if not d.table_prefix or len(d.table_prefix) > 200:
            out.append("spec.journal.dynamodb.tablePrefix: 1 to 200 characters")
        if self.read_model_rebuild and not _REBUILD_TOKEN.match(self.read_model_rebuild):
            out.append(
                f"spec.readModel.rebuild: 1 to 32 of [A-Za-z0-9_-], got {self.read_model_rebuild!r}"
            )
        else:
            problem = database_problem(self.target_database())
            if problem:
                out.append(
                    f"spec.readModel.mysql.database (with spec.readModel.rebuild): {problem}"
                )
        out += self.auth.problems()
        out += self.monitoring.problems()
        out += self.tracing.problems()
        out += self.rebalance_policy.problems()
        out += self.network.problems(self.port)
        out += self.upgrade.problems()
        out += self.projections.problems()
        return out

    # -- derived values -----------------------------------------------------------------------

    @property
    def table_prefix(self) -> str:
        return self.dynamodb.table_prefix or self.name

    def journal_url(self) -> str:
        """``THREADWEAVER_JOURNAL`` of the runtime: ``dynamodb://HOST:PORT?region=R&table-prefix=P``
        (no host: AWS; an https endpoint adds ``tls=true``)."""
        d = self.dynamodb
        netloc = ""
        query = [f"region={d.region}", f"table-prefix={self.table_prefix}"]
        if d.endpoint:
            parts = urlsplit(d.endpoint)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            netloc = f"{parts.hostname}:{port}"
            if parts.scheme == "https":
                query.append("tls=true")
        return f"dynamodb://{netloc}?{'&'.join(query)}"

    def target_database(self) -> str:
        """The database the cluster should serve: ``spec.readModel.mysql.database``, with
        ``_<token>`` appended when ``spec.readModel.rebuild`` is set (``-`` becomes ``_``)."""
        token = self.read_model_rebuild.replace("-", "_")
        return f"{self.mysql.database}_{token}" if token else self.mysql.database

    def with_database(self, database: str) -> ClusterSpec:
        """This spec with ``spec.readModel.mysql.database`` replaced (same server and Secret):
        the spec the Jobs and pods of one database of a rebuild are built from."""
        if database == self.mysql.database:
            return self
        return replace(self, mysql=replace(self.mysql, database=database))

    def read_model_url(self) -> str:
        """``THREADWEAVER_READ_MODEL``: no password in it (it comes from the mounted Secret)."""
        m = self.mysql
        return f"mysql+aiomysql://{m.user}@{m.host}:{m.port}/{m.database}"

    def migration_revision(self) -> str:
        """Hash naming the migration Job: a new image or read model means a new migration."""
        mysql = asdict(self.mysql)
        mysql.pop("migrate", None)
        key = {"image": self.image, "mysql": mysql, "pull": self.image_pull_policy}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]

    def secret_names(self) -> list[str]:
        auth = self.auth.secret_ref.name if self.auth.enabled and self.auth.secret_ref else None
        return [
            s for s in (self.dynamodb.credentials_secret, self.mysql.password_secret, auth) if s
        ]


_REBUILD_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# -- spec.monitoring ---------------------------------------------------------------------------

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


@dataclass(frozen=True)
class MonitoringSpec:
    """``spec.monitoring``: ``podMonitor: true`` makes the operator create a PodMonitor
    (monitoring.coreos.com/v1, the Prometheus Operator's) scraping the runtime pods' /metrics
    every ``interval``, with ``labels`` (to match a Prometheus' podMonitorSelector)."""

    pod_monitor: bool = False
    interval: str = "30s"
    labels: Mapping[str, str] = field(default_factory=dict)

    def problems(self) -> list[str]:
        if not _DURATION.match(self.interval):
            return [
                f"spec.monitoring.interval: a duration such as 30s or 1m, got {self.interval!r}"
            ]
        return []


def _monitoring(value: Any) -> MonitoringSpec:
    m = _obj(value, "spec.monitoring")
    return MonitoringSpec(
        pod_monitor=_bool(m.get("podMonitor", False), "spec.monitoring.podMonitor"),
        interval=_str(m.get("interval") or "30s", "spec.monitoring.interval"),
        labels={str(k): str(v) for k, v in _obj(m.get("labels"), "spec.monitoring.labels").items()},
    )


# -- spec.tracing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TracingSpec:
    """``spec.tracing``: the OTLP/HTTP endpoint the runtime pods export their spans to (the
    runtime's ``--otel-endpoint``; empty: tracing off) and the fraction of traces recorded."""

    endpoint: str = ""
    sample_ratio: float = 1.0

    def problems(self) -> list[str]:
        out = []
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                out.append(f"spec.tracing.endpoint: {self.endpoint!r} is not an http(s) URL")
        if not 0.0 <= self.sample_ratio <= 1.0:
            out.append("spec.tracing.sampleRatio: must be between 0 and 1")
        return out


def _tracing(value: Any) -> TracingSpec:
    t = _obj(value, "spec.tracing")
    ratio = t.get("sampleRatio", TracingSpec.sample_ratio)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise SpecError(f"spec.tracing.sampleRatio: expected a number, got {ratio!r}")
    return TracingSpec(
        endpoint=_str(t.get("endpoint") or "", "spec.tracing.endpoint"), sample_ratio=float(ratio)
    )


def _auth(value: Any) -> AuthSpec:
    auth = _obj(value, "spec.auth")
    jwt = auth.get("jwt")
    jwt_obj = _obj(jwt, "spec.auth.jwt")
    return AuthSpec(
        mode=_str(auth.get("mode") or AuthSpec.mode, "spec.auth.mode"),
        jwt_given=jwt is not None,
        hs256_secret=_secret_ref(
            jwt_obj.get("hs256SecretRef"), "spec.auth.jwt.hs256SecretRef", DEFAULT_HS256_KEY
        ),
        jwks_secret=_secret_ref(
            jwt_obj.get("jwksSecretRef"), "spec.auth.jwt.jwksSecretRef", DEFAULT_JWKS_KEY
        ),
        issuer=_str(jwt_obj.get("issuer") or "", "spec.auth.jwt.issuer"),
        audience=_str(jwt_obj.get("audience") or "", "spec.auth.jwt.audience"),
    )


def _secret_ref(value: Any, path: str, default_key: str) -> SecretKeyRef | None:
    """A ``{name, key}`` reference; ``None`` when absent (an empty name is kept, for problems())."""
    if value is None:
        return None
    ref = _obj(value, path)
    key = ref.get("key")
    return SecretKeyRef(
        name=_str(ref.get("name") or "", f"{path}.name"),
        key=default_key if key is None else _str(key, f"{path}.key"),
    )


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}: expected an object, got {type(value).__name__}")
    return dict(value)


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{path}: expected a list, got {type(value).__name__}")
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{path}: expected a string, got {value!r}")
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}: expected an integer, got {value!r}")
    return value


def _opt_int(value: Any, path: str) -> int | None:
    return None if value is None else _int(value, path)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected a boolean, got {value!r}")
    return value

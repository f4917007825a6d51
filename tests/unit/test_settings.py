"""Settings: one frozen value of per-subsystem dataclasses (config.py), whose declarations the
command line is derived from; the CLI interface users and the operator depend on; and the CRD's
and the operator spec's defaults, which must equal the runtime's where they set the same thing."""

from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest
import yaml

from threadweaver import replay_command
from threadweaver.adapters.journal.dynamodb import DynamoDBSettings
from threadweaver.application.settings import EntitySettings, ProjectorSettings
from threadweaver.cli import build_parser, settings_from
from threadweaver.config import (
    DYNAMODB_POLL_INTERVAL,
    ConfigError,
    Settings,
    TableSettings,
    options_of,
)
from threadweaver_operator import spec as operator_spec
from threadweaver_operator.spec import AuthSpec, ClusterSpec, DynamoDBSpec, MySQLSpec

REPO = Path(__file__).resolve().parents[2]
CRDS = [
    REPO / "crds" / "threadweavercluster.yaml",
    REPO / "charts" / "thread-weaver-operator" / "crds" / "threadweavercluster.yaml",
]


def subparser(command: str):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[command]


def flag_defaults(command: str) -> dict[str, object]:
    return {
        action.option_strings[0]: action.default
        for action in subparser(command)._actions
        if action.option_strings != ["-h", "--help"]
    }


# --- the CLI interface: flag names, environment variables, defaults (as before the settings
# --- were declared per subsystem; users and the operator depend on them) ---------------------
STORAGE = {
    "--data-dir": Path(".data"),
    "--journal": "",
    "--read-model": "",
    "--read-model-password-file": "",
    "--shards": 1024,
    "--log-level": "info",
    "--log-format": "text",
}
SERVE = {
    **STORAGE,
    "--host": "127.0.0.1",
    "--port": 8080,
    "--auto-migrate": None,  # true for SQLite, false for MySQL
    "--sync-mode": "full",
    "--snapshot-every": 100,
    "--passivate-after": 120.0,
    "--max-entities": 100_000,
    "--request-timeout": 20.0,
    "--max-body-bytes": 1 << 20,
    "--projection-batch-size": 500,
    "--projection-poll-interval": "1",  # see the test below (derived: the journal may choose)
    "--member-name": "local",  # without $HOSTNAME
    "--cluster": "",
    "--namespace": "",
    "--kubeconfig": "",
    "--peer-address": "",
    "--peer-address-template": "",
    "--internal-port": 0,  # the internal API on --port
    "--peer-token-file": "",
    "--lease-duration": 15,
    "--lease-renew-every": 5.0,
    "--idempotency-keys": 1000,
    "--idempotency-window": 86_400.0,
    "--auth": "none",
    "--jwt-hs256-secret-file": "",
    "--jwt-jwks-file": "",
    "--jwt-issuer": "",
    "--jwt-audience": "",
    "--otel-endpoint": "",  # tracing off
    "--otel-sample-ratio": 1.0,
    "--stream-buffer": 256,
    "--stream-heartbeat": 15.0,
    "--streams-per-account": 16,
    "--stream-max-duration": 0.0,
    "--stream-account-threads": 400,
    "--stream-account-refresh": 5.0,
    "--read-your-writes-timeout": 2.0,
}
CREATE_TABLES = {
    **STORAGE,
    "--billing-mode": "PAY_PER_REQUEST",
    "--read-capacity": None,
    "--write-capacity": None,
    "--timeout": 300.0,
    "--no-wait": False,
    "--point-in-time-recovery": False,
}
COMMANDS = {"serve": SERVE, "migrate": STORAGE, "create-tables": CREATE_TABLES}


def env_of(flag: str) -> str:
    return "THREADWEAVER_" + flag.removeprefix("--").upper().replace("-", "_")


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("THREADWEAVER_") or name == "HOSTNAME":
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_flags_and_their_defaults_are_the_interface(command, clean_env):
    expected = dict(COMMANDS[command])
    actual = flag_defaults(command)
    assert set(actual) == set(expected)
    poll = expected.pop("--projection-poll-interval", None)
    if poll is not None:  # not shown: the help says how the journal chooses it
        assert actual.pop("--projection-poll-interval") in (None, 0.0)
        help_text = subparser(command).format_help()
        assert f"(default: {poll})" in " ".join(help_text.split())
    assert actual == expected


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_documents_every_flag_with_its_environment_variable(command, clean_env):
    help_text = " ".join(subparser(command).format_help().split())
    for action in subparser(command)._actions:
        flag = action.option_strings[-1]
        if flag == "--help":
            continue
        assert action.help and action.help.endswith(f"[env {env_of(flag)}]"), flag
        assert flag in help_text and f"[env {env_of(flag)}]" in help_text, flag


def sample(action) -> tuple[str, object]:
    """A valid value for the flag, as text, and as parsed."""
    if action.choices:
        return action.choices[-1], action.choices[-1]
    kind = getattr(action.type, "__name__", "")
    return {
        "int": ("7", 7),
        "float": ("2.5", 2.5),
        "_bool": ("true", True),
        "Path": ("/tmp/tw", Path("/tmp/tw")),
    }.get(kind, ("text", "text"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_reads_its_environment_variable(command, clean_env):
    actions = [a for a in subparser(command)._actions if a.option_strings != ["-h", "--help"]]
    for action in actions:
        clean_env.setenv(env_of(action.option_strings[0]), sample(action)[0])
    parsed = build_parser().parse_args([command])
    for action in actions:
        assert getattr(parsed, action.dest) == sample(action)[1], action.option_strings
    # and the command line wins over the variable
    assert build_parser().parse_args([command, "--shards", "3"]).shards == 3


def test_a_malformed_environment_variable_is_an_error(clean_env):
    clean_env.setenv("THREADWEAVER_SHARDS", "many")
    with pytest.raises(SystemExit):
        build_parser()


# --- the settings value ------------------------------------------------------------------------
def test_settings_are_frozen_all_the_way_down():
    settings = Settings()
    with pytest.raises(FrozenInstanceError):
        settings.server = None  # type: ignore[misc]
    for group in fields(Settings):
        with pytest.raises(FrozenInstanceError):
            setattr(getattr(settings, group.name), fields(getattr(settings, group.name))[0].name, 1)


def test_each_flag_default_is_the_dataclass_default(clean_env):
    """No default is written twice: the subsystems' dataclasses are where the flags' come from."""
    defaults = flag_defaults("serve")
    entities, projection = EntitySettings(), ProjectorSettings()
    assert defaults["--snapshot-every"] == entities.snapshot_every
    assert defaults["--idempotency-window"] == entities.idempotency_window
    assert defaults["--projection-batch-size"] == projection.batch_size
    for option in Settings.options():
        if not option.setting.derived:
            assert defaults[option.flag] == option.default, option.flag
    assert flag_defaults("create-tables")["--timeout"] == TableSettings().timeout
    assert {o.flag for o in options_of(TableSettings())} <= set(flag_defaults("create-tables"))


def test_resolving_returns_a_new_value(tmp_path):
    given = Settings.from_options({"data_dir": tmp_path})
    resolved = given.resolved()
    assert resolved is not given
    assert given.storage.journal == "" and given.storage.auto_migrate is None
    assert given.projection.poll_interval == 0.0  # still "chosen from the journal"
    assert resolved.storage.journal == f"sqlite:///{tmp_path / 'journal.db'}"
    assert resolved.storage.read_model == f"sqlite+aiosqlite:///{tmp_path / 'readmodel.db'}"
    assert resolved.storage.auto_migrate is True
    assert resolved.projection.poll_interval == ProjectorSettings().poll_interval
    assert resolved.resolved() == resolved


def test_derived_defaults(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    resolved = Settings.from_options(
        {
            "journal": "dynamodb://127.0.0.1:8000?region=r&table-prefix=p",
            "read_model": "mysql+aiomysql://tw@db:3306/tw",
            "cluster": "chat",
            "namespace": "ns",
            "port": 9000,
            "peer_token_file": str(token),
        }
    ).resolved()
    assert resolved.projection.poll_interval == DYNAMODB_POLL_INTERVAL
    assert resolved.storage.auto_migrate is False
    assert resolved.cluster.peer_address_template == "{member}.chat-headless.ns.svc:9000"
    assert resolved.cluster.peer_token == "s3cret"
    assert "s3cret" not in repr(resolved)
    explicit = Settings.from_options(
        {"journal": "dynamodb://?region=r&table-prefix=p", "projection_poll_interval": 2.0}
    ).resolved()
    assert explicit.projection.poll_interval == 2.0
    internal = Settings.from_options(
        {"cluster": "chat", "namespace": "ns", "port": 9000, "internal_port": 9080}
    ).resolved()
    assert internal.cluster.peer_address_template == "{member}.chat-headless.ns.svc:9080"


def test_invalid_settings_name_their_flag(tmp_path):
    for options, flag in (
        ({"journal": "postgres://x"}, "--journal"),
        ({"read_model": "postgres://x"}, "--read-model"),
        ({"shards": 0}, "--shards"),
        ({"sync_mode": "fast"}, "--sync-mode"),
        ({"port": 0}, "--port"),
        ({"peer_token_file": str(tmp_path / "missing")}, "--peer-token-file"),
        ({"internal_port": 8080}, "--internal-port"),  # the same as --port
        ({"internal_port": 70000}, "--internal-port"),
    ):
        with pytest.raises(ConfigError, match=flag):
            Settings.from_options({"data_dir": tmp_path, **options}).resolved()
    with pytest.raises(TypeError, match="not a setting"):
        Settings.from_options({"no_such_setting": 1})


def test_settings_from_the_command_line(tmp_path, clean_env):
    args = build_parser().parse_args(
        ["serve", "--data-dir", str(tmp_path), "--request-timeout", "3", "--log-level", "debug"]
    )
    settings = settings_from(args)
    assert settings.http.request_timeout_seconds == 3.0
    assert settings.logging.level == "debug"
    assert settings.storage.data_dir == tmp_path
    # migrate has no --port: the other commands keep the defaults of the flags they lack
    migrate = settings_from(build_parser().parse_args(["migrate", "--data-dir", str(tmp_path)]))
    assert migrate.server.port == 8080


# --- the CRD and the operator's spec against the runtime --------------------------------------
def crd_properties(crd: Path) -> dict:
    (version,) = yaml.safe_load(crd.read_text())["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def scalar_defaults(properties: dict, prefix: str = "") -> dict[str, object]:
    """spec path -> default, for every property with a scalar default."""
    out: dict[str, object] = {}
    for name, schema in properties.items():
        path = f"{prefix}{name}"
        if "default" in schema and not isinstance(schema["default"], dict | list):
            out[path] = schema["default"]
        out.update(scalar_defaults(schema.get("properties", {}), path + "."))
    return out


def parsed_spec() -> ClusterSpec:
    """The spec of a resource that gives only what is required: every default applied."""
    return ClusterSpec.from_resource(
        "chat", "ns", {"image": "i", "readModel": {"mysql": {"host": "db"}}}
    )


#: CRD path -> the operator spec's default for it
SPEC_DEFAULTS = {
    "replicas": lambda s: s.replicas,
    "shards": lambda s: s.shards,
    "journal.dynamodb.region": lambda s: s.dynamodb.region,
    "journal.dynamodb.createTables": lambda s: s.dynamodb.create_tables,
    "journal.dynamodb.billingMode": lambda s: s.dynamodb.billing_mode,
    "journal.dynamodb.credentialsSecret.accessKeyIdKey": lambda s: s.dynamodb.access_key_id_key,
    "journal.dynamodb.credentialsSecret.secretAccessKeyKey": (
        lambda s: s.dynamodb.secret_access_key_key
    ),
    "readModel.mysql.port": lambda s: s.mysql.port,
    "readModel.mysql.database": lambda s: s.mysql.database,
    "readModel.mysql.user": lambda s: s.mysql.user,
    "readModel.mysql.passwordSecret.key": lambda s: s.mysql.password_key,
    "readModel.mysql.migrate": lambda s: s.mysql.migrate,
    "auth.mode": lambda s: s.auth.mode,
    "auth.jwt.hs256SecretRef.key": lambda s: operator_spec.DEFAULT_HS256_KEY,
    "auth.jwt.jwksSecretRef.key": lambda s: operator_spec.DEFAULT_JWKS_KEY,
    "passivationTimeoutSeconds": lambda s: s.passivation_timeout_seconds,
    "service.type": lambda s: s.service_type,
    "service.port": lambda s: s.port,
    "rebalance.maxRangesPerRound": lambda s: s.max_ranges_per_round,
    "deletionPolicy": lambda s: s.deletion_policy,
    "rebalance.mode": lambda s: s.rebalance_policy.mode,
    "rebalance.autoApproveFailover": lambda s: s.rebalance_policy.auto_approve_failover,
    "network.policy": lambda s: s.network.policy,
    "network.internalPort": lambda s: s.network.internal_port,
    "monitoring.podMonitor": lambda s: s.monitoring.pod_monitor,
    "monitoring.interval": lambda s: s.monitoring.interval,
    "tracing.sampleRatio": lambda s: s.tracing.sample_ratio,
    "upgrade.replayCheck": lambda s: s.upgrade.replay_check,
    "upgrade.sampleSize": lambda s: s.upgrade.sample_size,
    "projections.maxLagSeconds": lambda s: s.projections.max_lag_seconds,
}

#: CRD path -> the runtime's default of the same setting (the flag the operator sets from it)
RUNTIME_DEFAULTS = {
    "shards": lambda: flag_defaults("serve")["--shards"],
    "service.port": lambda: flag_defaults("serve")["--port"],
    "passivationTimeoutSeconds": lambda: flag_defaults("serve")["--passivate-after"],
    "auth.mode": lambda: flag_defaults("serve")["--auth"],
    "tracing.sampleRatio": lambda: flag_defaults("serve")["--otel-sample-ratio"],
    "journal.dynamodb.billingMode": lambda: flag_defaults("create-tables")["--billing-mode"],
    # the sample `threadweaver replay-check` checks without --sample
    "upgrade.sampleSize": lambda: replay_command.DEFAULT_SAMPLE,
    # no flag: the journal URL always names the region, DynamoDBSettings' is for code
    "journal.dynamodb.region": lambda: DynamoDBSettings().region,
}


@pytest.mark.parametrize("crd", CRDS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_operator_spec_applies_the_crds_defaults(crd):
    defaults = scalar_defaults(crd_properties(crd))
    assert set(defaults) == set(SPEC_DEFAULTS), "a CRD default is not compared here"
    spec = parsed_spec()
    for path, default in defaults.items():
        assert SPEC_DEFAULTS[path](spec) == default, path


def test_the_spec_dataclasses_defaults_are_the_parsed_ones():
    spec = parsed_spec()
    assert spec.dynamodb == DynamoDBSpec(table_prefix="chat")
    assert spec.mysql == MySQLSpec(host="db")
    assert spec.auth == AuthSpec()
    for name in ("replicas", "shards", "passivation_timeout_seconds", "port", "service_type"):
        field = next(f for f in fields(ClusterSpec) if f.name == name)
        assert getattr(spec, name) == field.default, name


@pytest.mark.parametrize("path", sorted(RUNTIME_DEFAULTS))
def test_the_crd_and_the_spec_default_to_what_the_runtime_defaults_to(path, clean_env):
    runtime = RUNTIME_DEFAULTS[path]()
    for crd in CRDS:
        assert scalar_defaults(crd_properties(crd))[path] == runtime, (crd, path)
    assert SPEC_DEFAULTS[path](parsed_spec()) == runtime, path

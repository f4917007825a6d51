"""spec.auth: parsing and validation, the runtime pod's env/volume/mount, the CRD's rules, and the
reconcile's check of the referenced Secret (condition + Event, no rollout while it is missing)."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from test_operator_packaging import CRD, validator
from test_operator_reconcile import (  # noqa: F401 (env: the fixture)
    NS,
    SECRETS,
    add_secret,
    body,
    cluster,
    cond,
    env,
    finish_job,
    reconcile,
    status,
)

from threadweaver_operator import builders, events
from threadweaver_operator.builders import env_dict
from threadweaver_operator.spec import AuthSpec, ClusterSpec, SecretKeyRef, SpecError

BASE = {"image": "img:1", "readModel": {"mysql": {"host": "db"}}}
HS256 = {"mode": "jwt", "jwt": {"hs256SecretRef": {"name": "chat-jwt"}}}
JWKS = {
    "mode": "jwt",
    "jwt": {
        "jwksSecretRef": {"name": "idp-keys", "key": "keys.json"},
        "issuer": "https://idp.example.com/",
        "audience": "thread-weaver",
    },
}
AUTH_VARS = (
    "THREADWEAVER_AUTH",
    "THREADWEAVER_JWT_HS256_SECRET_FILE",
    "THREADWEAVER_JWT_JWKS_FILE",
    "THREADWEAVER_JWT_ISSUER",
    "THREADWEAVER_JWT_AUDIENCE",
)


def parse(auth=None, **extra) -> ClusterSpec:
    raw = {**BASE, **extra}
    if auth is not None:
        raw["auth"] = auth
    return ClusterSpec.from_resource("chat", "team", raw)


def pod(spec: ClusterSpec) -> dict:
    return builders.statefulset(spec, 1)["spec"]["template"]["spec"]


# -- parsing and validation -------------------------------------------------------------------


def test_absent_or_mode_none_is_no_auth():
    for s in (parse(), parse({}), parse({"mode": "none"})):
        assert s.auth == AuthSpec() and not s.auth.enabled and s.problems() == []


def test_hs256_ref_parses_with_the_default_key():
    s = parse(HS256)
    assert s.problems() == []
    assert (
        s.auth.enabled
        and s.auth.hs256_secret == SecretKeyRef("chat-jwt", "secret")
        and s.auth.jwks_secret is None
    )
    assert s.auth.secret_ref_field == "spec.auth.jwt.hs256SecretRef"
    assert (s.auth.issuer, s.auth.audience) == ("", "")
    assert "chat-jwt" in s.secret_names()


def test_jwks_ref_with_issuer_and_audience():
    s = parse(JWKS)
    assert s.problems() == []
    assert (
        s.auth.jwks_secret == SecretKeyRef("idp-keys", "keys.json") and s.auth.hs256_secret is None
    )
    assert (s.auth.issuer, s.auth.audience) == ("https://idp.example.com/", "thread-weaver")
    assert (
        parse({"mode": "jwt", "jwt": {"jwksSecretRef": {"name": "k"}}}).auth.jwks_secret.key
        == "jwks.json"
    )


@pytest.mark.parametrize(
    "auth,expect",
    [
        (
            {
                "mode": "jwt",
                "jwt": {"hs256SecretRef": {"name": "a"}, "jwksSecretRef": {"name": "b"}},
            },
            "spec.auth.jwt: exactly one of hs256SecretRef or jwksSecretRef, not both",
        ),
        (
            {"mode": "jwt", "jwt": {"issuer": "i"}},
            "spec.auth.jwt: exactly one of hs256SecretRef or jwksSecretRef is required",
        ),
        ({"mode": "jwt"}, "spec.auth.jwt: required with mode jwt"),
        ({"mode": "oauth"}, "spec.auth.mode: one of none, jwt, got 'oauth'"),
        (
            {"mode": "none", "jwt": {"hs256SecretRef": {"name": "a"}}},
            "spec.auth.jwt: given but spec.auth.mode is none",
        ),
        (
            {"jwt": {"hs256SecretRef": {"name": "a"}}},
            "spec.auth.jwt: given but spec.auth.mode is none",
        ),
        (
            {"mode": "jwt", "jwt": {"hs256SecretRef": {}}},
            "spec.auth.jwt.hs256SecretRef.name: required",
        ),
        (
            {"mode": "jwt", "jwt": {"jwksSecretRef": {"name": "k", "key": ""}}},
            "spec.auth.jwt.jwksSecretRef.key: must not be empty",
        ),
    ],
)
def test_invalid_auth_is_a_problem_naming_the_field(auth, expect):
    problems = parse(auth).problems()
    assert any(p.startswith(expect) for p in problems), problems


@pytest.mark.parametrize(
    "auth,field",
    [
        ("jwt", "spec.auth"),
        ({"mode": 1}, "spec.auth.mode"),
        ({"mode": "jwt", "jwt": "key"}, "spec.auth.jwt"),
        ({"mode": "jwt", "jwt": {"hs256SecretRef": "s"}}, "spec.auth.jwt.hs256SecretRef"),
        (
            {"mode": "jwt", "jwt": {"hs256SecretRef": {"name": 3}}},
            "spec.auth.jwt.hs256SecretRef.name",
        ),
        (
            {"mode": "jwt", "jwt": {"jwksSecretRef": {"name": "k"}, "audience": ["a"]}},
            "spec.auth.jwt.audience",
        ),
    ],
)
def test_wrong_types_raise_spec_error(auth, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse(auth)


# -- the runtime pod --------------------------------------------------------------------------


def test_mode_none_adds_nothing_to_the_pod():
    for s in (parse(), parse({"mode": "none"})):
        p = pod(s)
        (c,) = p["containers"]
        assert not set(AUTH_VARS) & set(env_dict(c))
        assert "jwt" not in {v["name"] for v in p["volumes"]}
        assert builders.JWT_MOUNT not in {m["mountPath"] for m in c["volumeMounts"]}
    # byte for byte the template of a spec without the field: existing clusters do not roll
    assert builders.statefulset(parse({"mode": "none"}), 3) == builders.statefulset(parse(), 3)


def test_hs256_env_volume_and_mount():
    p = pod(parse(HS256))
    (c,) = p["containers"]
    variables = env_dict(c)
    assert variables["THREADWEAVER_AUTH"] == "jwt"
    assert (
        variables["THREADWEAVER_JWT_HS256_SECRET_FILE"]
        == builders.JWT_HS256_FILE
        == "/var/run/secrets/threadweaver/jwt/hs256-secret"
    )
    assert not {
        "THREADWEAVER_JWT_JWKS_FILE",
        "THREADWEAVER_JWT_ISSUER",
        "THREADWEAVER_JWT_AUDIENCE",
    } & set(variables)
    vols = {v["name"]: v for v in p["volumes"]}
    assert vols["jwt"] == {
        "name": "jwt",
        "secret": {
            "secretName": "chat-jwt",
            "items": [{"key": "secret", "path": "hs256-secret"}],
            "defaultMode": 0o440,
        },
    }
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["jwt"] == {"name": "jwt", "mountPath": builders.JWT_MOUNT, "readOnly": True}
    # still restricted-profile shaped: no new security settings, only a secret volume
    assert (
        c["securityContext"]["readOnlyRootFilesystem"] is True
        and c["securityContext"]["runAsNonRoot"] is True
    )
    assert {next(k for k in v if k != "name") for v in p["volumes"]} <= {"emptyDir", "secret"}


def test_jwks_env_volume_issuer_and_audience():
    p = pod(parse(JWKS))
    (c,) = p["containers"]
    variables = env_dict(c)
    assert variables["THREADWEAVER_AUTH"] == "jwt"
    assert (
        variables["THREADWEAVER_JWT_JWKS_FILE"]
        == builders.JWT_JWKS_FILE
        == "/var/run/secrets/threadweaver/jwt/jwks.json"
    )
    assert variables["THREADWEAVER_JWT_ISSUER"] == "https://idp.example.com/"
    assert variables["THREADWEAVER_JWT_AUDIENCE"] == "thread-weaver"
    assert "THREADWEAVER_JWT_HS256_SECRET_FILE" not in variables
    (vol,) = [v for v in p["volumes"] if v["name"] == "jwt"]
    assert vol["secret"]["secretName"] == "idp-keys"
    assert vol["secret"]["items"] == [{"key": "keys.json", "path": "jwks.json"}]


def test_the_migration_job_gets_no_auth():
    job = builders.migration_job(parse(HS256))["spec"]["template"]["spec"]
    assert not set(AUTH_VARS) & set(env_dict(job["containers"][0]))
    assert "jwt" not in {v["name"] for v in job["volumes"]}
    assert (
        parse(HS256).migration_revision() == parse().migration_revision()
    )  # no new migration for auth


def test_every_auth_variable_is_a_serve_flag():
    from threadweaver.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["serve"]
    flags = {opt for action in sub._actions for opt in action.option_strings}
    for s in (parse(HS256), parse(JWKS)):
        for name in env_dict(pod(s)["containers"][0]):
            if name in AUTH_VARS:
                assert "--" + name[len("THREADWEAVER_") :].lower().replace("_", "-") in flags, name


@pytest.mark.parametrize("auth", [HS256, JWKS])
def test_runtime_accepts_the_settings_with_the_mounted_file(auth, tmp_path):
    """The env the operator sets, with the mounted file where the Secret would put it, starts a
    runtime with a JWT verifier (what the pod would do)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    from threadweaver.cli import build_parser, settings_from

    variables = {
        k: v for k, v in env_dict(pod(parse(auth))["containers"][0]).items() if k in AUTH_VARS
    }
    key_file = tmp_path / "key"
    if "THREADWEAVER_JWT_HS256_SECRET_FILE" in variables:
        key_file.write_text("x" * 40)
        variables["THREADWEAVER_JWT_HS256_SECRET_FILE"] = str(key_file)
    else:
        public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        key_file.write_text(
            json.dumps({"keys": [{**json.loads(RSAAlgorithm.to_jwk(public)), "kid": "k1"}]})
        )
        variables["THREADWEAVER_JWT_JWKS_FILE"] = str(key_file)
    old = dict(os.environ)
    try:
        os.environ.update(variables)
        settings = settings_from(build_parser().parse_args(["serve"]))
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert settings.auth.mode == "jwt"
    verifier = settings.jwt_verifier()
    assert verifier.issuer == (auth["jwt"].get("issuer") or None)
    assert verifier.audience == (auth["jwt"].get("audience") or None)


# -- the CRD ----------------------------------------------------------------------------------


def test_crd_auth_schema_and_rules():
    (v,) = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    auth = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["auth"]
    assert "default" not in auth  # absent stays absent: existing objects read back unchanged
    assert (
        auth["properties"]["mode"]["enum"] == ["none", "jwt"]
        and auth["properties"]["mode"]["default"] == "none"
    )
    jwt = auth["properties"]["jwt"]
    assert [r["rule"] for r in jwt["x-kubernetes-validations"]] == [
        "has(self.hs256SecretRef) != has(self.jwksSecretRef)"
    ]
    assert [r["rule"] for r in auth["x-kubernetes-validations"]] == [
        "(has(self.mode) && self.mode == 'jwt') == has(self.jwt)"
    ]
    for ref, default in (("hs256SecretRef", "secret"), ("jwksSecretRef", "jwks.json")):
        assert jwt["properties"][ref]["required"] == ["name"]
        assert jwt["properties"][ref]["properties"]["key"]["default"] == default
    assert set(jwt["properties"]) == {"hs256SecretRef", "jwksSecretRef", "issuer", "audience"}


def _doc(auth):
    return {
        "apiVersion": "threadweaver.io/v1alpha1",
        "kind": "ThreadWeaverCluster",
        "metadata": {"name": "x"},
        "spec": {**BASE, "auth": auth},
    }


def test_schema_accepts_auth_and_rejects_bad_values():
    assert validator().is_valid(_doc(HS256)) and validator().is_valid(_doc(JWKS))
    assert validator().is_valid(_doc({"mode": "none"}))
    for bad in (
        {"mode": "oauth"},
        {"mode": "jwt", "jwt": {"hs256SecretRef": {}}},
        {"mode": "jwt", "jwt": {"hs256SecretRef": {"name": ""}}},
        {"mode": "jwt", "jwt": {"jwksSecretRef": {"name": "k", "key": ""}}},
    ):
        assert not validator().is_valid(_doc(bad)), bad


# -- the reconcile ----------------------------------------------------------------------------


def _ready_cluster(kube, **spec):
    add_secret(kube, "aws", SECRETS["aws"])
    add_secret(kube, "mysql", SECRETS["mysql"])
    cluster(kube, **spec)


async def test_missing_jwt_secret_blocks_the_rollout_with_a_condition(env, monkeypatch):  # noqa: F811
    kube = env
    posted = []
    monkeypatch.setattr(
        events,
        "post",
        lambda body, type_, reason, message: posted.append((type_, reason, message)),
    )
    _ready_cluster(kube, auth=HS256)
    await reconcile(kube, body(kube))
    assert status(kube)["phase"] == "Failed"
    migrated = cond(kube, "Migrated")
    assert migrated["status"] == "False" and migrated["reason"] == "SecretNotFound"
    assert (
        "chat-jwt" in migrated["message"] and "spec.auth.jwt.hs256SecretRef" in migrated["message"]
    )
    assert cond(kube, "Ready")["reason"] == "SecretNotFound"
    assert cond(kube, "Provisioned")["status"] == "True"  # the journal does not need it
    assert (
        "Warning",
        "SecretNotFound",
        f"Secret {NS}/chat-jwt not found (needed by spec.auth.jwt.hs256SecretRef)",
    ) in posted
    assert ("StatefulSet", NS, "chat") not in kube.objects and not [
        k for k in kube.objects if k[0] == "Job"
    ]

    # a Secret without the key
    add_secret(kube, "chat-jwt", {"other": "x" * 40})
    await reconcile(kube, body(kube))
    assert (
        cond(kube, "Migrated")["reason"] == "SecretKeyMissing"
        and "'secret'" in cond(kube, "Migrated")["message"]
    )

    # the key appears: the migration runs, then the StatefulSet mounts it
    add_secret(kube, "chat-jwt", {"secret": "x" * 40})
    await reconcile(kube, body(kube))
    assert cond(kube, "Migrated")["reason"] == "JobRunning"
    finish_job(kube)
    await reconcile(kube, body(kube))
    sts = kube.objects[("StatefulSet", NS, "chat")]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert env_dict(c)["THREADWEAVER_AUTH"] == "jwt"
    assert {"name": "jwt", "mountPath": builders.JWT_MOUNT, "readOnly": True} in c["volumeMounts"]


async def test_no_auth_does_not_read_a_jwt_secret(env):  # noqa: F811
    kube = env
    _ready_cluster(kube)
    await reconcile(kube, body(kube))
    assert cond(kube, "Migrated")["reason"] == "JobRunning"
    assert not [c for c in kube.calls if c[1] == "Secret" and "jwt" in c[2]]


async def test_invalid_auth_spec_is_invalid_spec(env, monkeypatch):  # noqa: F811
    kube = env
    posted = []
    monkeypatch.setattr(
        events,
        "post",
        lambda body, type_, reason, message: posted.append((type_, reason, message)),
    )
    _ready_cluster(
        kube,
        auth={
            "mode": "jwt",
            "jwt": {"hs256SecretRef": {"name": "a"}, "jwksSecretRef": {"name": "b"}},
        },
    )
    await reconcile(kube, body(kube))
    assert status(kube)["phase"] == "Failed" and cond(kube, "Ready")["reason"] == "InvalidSpec"
    assert (
        "spec.auth.jwt: exactly one of hs256SecretRef or jwksSecretRef"
        in cond(kube, "Ready")["message"]
    )
    assert any(
        t == "Warning" and r == "InvalidSpec" and "spec.auth.jwt" in m for t, r, m in posted
    ), posted
    assert [k for k in kube.objects if k[0] not in ("ThreadWeaverCluster", "Secret")] == []


async def test_turning_auth_on_rolls_the_statefulset_with_an_event(env, monkeypatch):  # noqa: F811
    kube = env
    posted = []
    monkeypatch.setattr(
        events,
        "post",
        lambda body, type_, reason, message: posted.append((type_, reason, message)),
    )
    _ready_cluster(kube)
    await reconcile(kube, body(kube))
    finish_job(kube)
    await reconcile(kube, body(kube))
    assert "THREADWEAVER_AUTH" not in env_dict(
        kube.objects[("StatefulSet", NS, "chat")]["spec"]["template"]["spec"]["containers"][0]
    )
    add_secret(kube, "idp-keys", {"keys.json": '{"keys": []}'})
    obj = kube.objects[("ThreadWeaverCluster", NS, "chat")]
    obj["spec"]["auth"] = JWKS
    obj["metadata"]["generation"] += 1
    posted.clear()
    await reconcile(kube, body(kube))
    c = kube.objects[("StatefulSet", NS, "chat")]["spec"]["template"]["spec"]["containers"][0]
    assert env_dict(c)["THREADWEAVER_JWT_JWKS_FILE"] == builders.JWT_JWKS_FILE
    assert [(r, m) for t, r, m in posted if r == "RollingUpdate"] == [
        ("RollingUpdate", "StatefulSet chat: rolling out authentication jwt")
    ]
    assert not [
        k for k in kube.objects if k[0] == "Job" and kube.objects[k].get("status") in (None, {})
    ]  # no new migration
    # another Secret: a rollout with an Event too; then nothing more
    add_secret(kube, "idp-keys-2", {"keys.json": '{"keys": []}'})
    obj["spec"]["auth"] = {
        "mode": "jwt",
        "jwt": {**JWKS["jwt"], "jwksSecretRef": {"name": "idp-keys-2", "key": "keys.json"}},
    }
    posted.clear()
    await reconcile(kube, body(kube))
    (vol,) = [
        v
        for v in kube.objects[("StatefulSet", NS, "chat")]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "jwt"
    ]
    assert vol["secret"]["secretName"] == "idp-keys-2"
    assert [r for t, r, m in posted if r == "RollingUpdate"] == ["RollingUpdate"]
    posted.clear()
    await reconcile(kube, body(kube))
    assert not [r for t, r, m in posted if r == "RollingUpdate"]


def test_auth_sample_ships_a_usable_secret(tmp_path):
    """config/samples/threadweavercluster-auth.yaml: its Secret holds the referenced key, and the
    runtime accepts that value as its HS256 secret."""
    from threadweaver.adapters.http.auth import JwtVerifier

    docs = [
        d
        for d in yaml.safe_load_all(
            (CRD.parents[1] / "config" / "samples" / "threadweavercluster-auth.yaml").read_text()
        )
        if d
    ]
    (twc,) = [d for d in docs if d["kind"] == "ThreadWeaverCluster"]
    s = ClusterSpec.from_resource(twc["metadata"]["name"], "default", twc["spec"])
    assert s.problems() == [] and s.auth.enabled
    ref = s.auth.secret_ref
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert set(s.secret_names()) <= set(secrets)
    key_file = tmp_path / "secret"
    key_file.write_text(secrets[ref.name]["stringData"][ref.key])
    assert JwtVerifier.from_files(
        hs256_secret_file=str(key_file), issuer=s.auth.issuer, audience=s.auth.audience
    )

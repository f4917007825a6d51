"""spec.auth against a real API server, without the operator (cheap): the CRD's CEL rules and
defaults, and Pod Security admission (`restricted`) accepting the runtime pod that mounts the JWT
key. The reconcile itself (the Secret check, the StatefulSet) is covered by
tests/unit/operator/test_operator_auth.py."""

from __future__ import annotations

import json

import pytest
import yaml
from operator_e2e_support import cluster_manifest, kubectl

from threadweaver_operator import builders
from threadweaver_operator.spec import ClusterSpec

pytestmark = pytest.mark.e2e

HS256 = {"mode": "jwt", "jwt": {"hs256SecretRef": {"name": "jwt"}}}


def _apply(body: dict):
    return kubectl("apply", "-f", "-", input=json.dumps(body), check=False)


def test_schema_rules_of_auth(crd, ns):
    base = cluster_manifest(ns, "authbad", "p")
    for auth, expect in [
        (
            {
                "mode": "jwt",
                "jwt": {"hs256SecretRef": {"name": "a"}, "jwksSecretRef": {"name": "b"}},
            },
            "exactly one of hs256SecretRef or jwksSecretRef",
        ),
        ({"mode": "jwt", "jwt": {"issuer": "i"}}, "exactly one of hs256SecretRef or jwksSecretRef"),
        ({"mode": "jwt"}, "mode jwt needs auth.jwt"),
        ({"jwt": {"hs256SecretRef": {"name": "a"}}}, "mode jwt needs auth.jwt"),
        ({"mode": "oauth"}, "spec.auth.mode"),
    ]:
        body = json.loads(json.dumps(base))
        body["spec"]["auth"] = auth
        proc = _apply(body)
        assert proc.returncode != 0 and expect in proc.stderr, (auth, proc.stderr)
    # accepted, with the key's default; a cluster without spec.auth reads back without it
    ok = json.loads(json.dumps(base))
    ok["spec"]["auth"] = HS256
    assert _apply(ok).returncode == 0
    got = kubectl(
        "get",
        "twc",
        "authbad",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.auth.mode}/{.spec.auth.jwt.hs256SecretRef.key}",
    ).stdout
    assert got == "jwt/secret"
    plain = cluster_manifest(ns, "authnone", "q")
    assert _apply(plain).returncode == 0
    assert (
        "auth"
        not in json.loads(kubectl("get", "twc", "authnone", "-n", ns, "-o", "json").stdout)["spec"]
    )


def test_runtime_pod_with_jwt_passes_restricted_pod_security(ns):
    kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    for name, auth in (
        ("auth-hs256", HS256),
        ("auth-jwks", {"mode": "jwt", "jwt": {"jwksSecretRef": {"name": "jwks"}, "audience": "a"}}),
    ):
        spec = ClusterSpec.from_resource(
            name,
            ns,
            {
                "image": "threadweaver:test",
                "replicas": 1,
                "readModel": {"mysql": {"host": "db"}},
                "auth": auth,
            },
        )
        template = builders.statefulset(spec, 1)["spec"]["template"]
        assert any(v["name"] == "jwt" for v in template["spec"]["volumes"])
        kubectl(
            "create",
            "serviceaccount",
            template["spec"]["serviceAccountName"],
            "-n",
            ns,
            check=False,
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }
        result = kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(pod), check=False)
        assert result.returncode == 0, (
            f"{name} pod refused by Pod Security admission:\n{result.stderr}"
        )
        assert "violate" not in result.stderr, result.stderr

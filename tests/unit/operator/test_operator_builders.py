"""builders: the manifests are complete, valid-looking and carry the runtime contract."""

from __future__ import annotations

import yaml

from threadweaver.shards import SHARDMAP_KEY, ShardMap
from threadweaver_operator import builders, names
from threadweaver_operator.builders import env_dict
from threadweaver_operator.spec import ClusterSpec

BODY = {
    "apiVersion": "threadweaver.io/v1alpha1",
    "kind": "ThreadWeaverCluster",
    "metadata": {"name": "chat", "namespace": "team", "uid": "u-1"},
}


def spec(**overrides) -> ClusterSpec:
    raw = {
        "image": "ghcr.io/example/thread-weaver:1.2.3",
        "replicas": 3,
        "journal": {
            "dynamodb": {
                "endpoint": "http://dynalite.team.svc:8000",
                "region": "eu-west-1",
                "credentialsSecret": {"name": "aws"},
            }
        },
        "readModel": {"mysql": {"host": "mysql.team.svc", "passwordSecret": {"name": "mysql"}}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    raw.update(overrides)
    return ClusterSpec.from_resource("chat", "team", raw)


def owner():
    return builders.owner_reference(BODY)


def test_defaults_follow_the_crd():
    s = ClusterSpec.from_resource(
        "c", "ns", {"image": "img", "readModel": {"mysql": {"host": "db"}}}
    )
    assert (s.replicas, s.shards, s.port, s.service_type, s.deletion_policy) == (
        3,
        1024,
        8080,
        "ClusterIP",
        "Retain",
    )
    assert s.table_prefix == "c" and s.dynamodb.region == "us-east-1" and s.dynamodb.create_tables
    assert (s.mysql.port, s.mysql.database, s.mysql.user, s.mysql.migrate) == (
        3306,
        "threadweaver",
        "threadweaver",
        True,
    )
    assert s.passivation_timeout_seconds == 120 and s.max_ranges_per_round == 8
    assert s.problems() == []


def test_statefulset_env_probes_and_security():
    sts = builders.statefulset(spec(), 3, owner())
    assert sts["metadata"]["name"] == "chat" and sts["metadata"]["namespace"] == "team"
    assert sts["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    s = sts["spec"]
    assert s["replicas"] == 3 and s["serviceName"] == "chat-headless"
    assert s["podManagementPolicy"] == "Parallel" and s["updateStrategy"]["type"] == "RollingUpdate"
    assert s["selector"]["matchLabels"] == names.selector_labels("chat")
    pod = s["template"]["spec"]
    assert set(s["selector"]["matchLabels"].items()) <= set(
        s["template"]["metadata"]["labels"].items()
    )
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["serviceAccountName"] == "chat-runtime"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/example/thread-weaver:1.2.3"
    assert c["command"] == ["threadweaver", "serve"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "internal", "containerPort": 9080, "protocol": "TCP"},
    ]
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}}
    env = env_dict(c)
    assert env["THREADWEAVER_HOST"] == "0.0.0.0"
    assert env["THREADWEAVER_PORT"] == "8080"
    assert env["THREADWEAVER_CLUSTER"] == "chat"
    assert env["THREADWEAVER_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["THREADWEAVER_MEMBER_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert (
        env["THREADWEAVER_JOURNAL"]
        == "dynamodb://dynalite.team.svc:8000?region=eu-west-1&table-prefix=chat"
    )
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "aws", "key": "access-key-id"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "aws", "key": "secret-access-key"}
    }
    assert (
        env["THREADWEAVER_READ_MODEL"]
        == "mysql+aiomysql://threadweaver@mysql.team.svc:3306/threadweaver"
    )
    assert env["THREADWEAVER_READ_MODEL_PASSWORD_FILE"] == builders.PASSWORD_FILE
    assert env["THREADWEAVER_SHARDS"] == "1024"
    assert env["THREADWEAVER_PASSIVATE_AFTER"] == "120"
    assert env["THREADWEAVER_LOG_FORMAT"] == "json"
    assert env["THREADWEAVER_AUTO_MIGRATE"] == "false"
    assert env["THREADWEAVER_PEER_TOKEN_FILE"] == builders.PEER_TOKEN_FILE
    # $(VAR) references only point at variables defined earlier (Kubernetes expands in order)
    order = [e["name"] for e in c["env"]]
    assert order.index("THREADWEAVER_MEMBER_NAME") < order.index("THREADWEAVER_PEER_ADDRESS")
    assert order.index("THREADWEAVER_NAMESPACE") < order.index("THREADWEAVER_PEER_ADDRESS")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert (
        "/tmp" in mounts
        and builders.PASSWORD_MOUNT in mounts
        and builders.PEER_TOKEN_MOUNT in mounts
    )
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert vols["read-model-password"]["secret"]["secretName"] == "mysql"
    assert vols["peer-token"]["secret"]["secretName"] == "chat-peer-token"
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_no_secrets_means_no_secret_env():
    s = ClusterSpec.from_resource(
        "c", "ns", {"image": "img", "readModel": {"mysql": {"host": "db"}}}
    )
    env = env_dict(builders.statefulset(s, 1)["spec"]["template"]["spec"]["containers"][0])
    assert "AWS_ACCESS_KEY_ID" not in env and "THREADWEAVER_READ_MODEL_PASSWORD_FILE" not in env
    assert env["THREADWEAVER_JOURNAL"] == "dynamodb://?region=us-east-1&table-prefix=c"


def test_https_endpoint_and_table_prefix():
    s = spec(
        journal={"dynamodb": {"endpoint": "https://ddb.example.com", "tablePrefix": "prod-chat"}}
    )
    assert (
        s.journal_url()
        == "dynamodb://ddb.example.com:443?region=us-east-1&table-prefix=prod-chat&tls=true"
    )


def test_pod_scheduling_fields_and_annotations():
    s = spec(
        podAnnotations={"a": "b"},
        nodeSelector={"disk": "ssd"},
        tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        imagePullPolicy="Always",
    )
    t = builders.statefulset(s, 1)["spec"]["template"]
    assert t["metadata"]["annotations"] == {"a": "b"}
    assert t["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert t["spec"]["tolerations"][0]["key"] == "k"
    assert t["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_services_and_pdb():
    s = spec(service={"type": "NodePort", "port": 9090})
    headless = builders.headless_service(s)
    assert headless["metadata"]["name"] == "chat-headless"
    assert (
        headless["spec"]["clusterIP"] == "None"
        and headless["spec"]["publishNotReadyAddresses"] is True
    )
    client = builders.client_service(s)
    assert client["metadata"]["name"] == "chat" and client["spec"]["type"] == "NodePort"
    assert (
        client["spec"]["ports"][0]["port"] == 9090
        and client["spec"]["ports"][0]["targetPort"] == "http"
    )
    pdb = builders.pod_disruption_budget(s)
    assert pdb["metadata"]["name"] == "chat-pdb" and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == names.selector_labels("chat")


def test_role_is_least_privilege():
    role = builders.role(spec(), 3)
    rules = role["rules"]
    assert role["metadata"]["name"] == "chat-runtime"
    cm = [r for r in rules if r["resources"] == ["configmaps"]]
    assert cm == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["chat-shardmap"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    leases = [r for r in rules if r["resources"] == ["leases"]]
    assert {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["create"],
    } in leases
    named = [r for r in leases if "resourceNames" in r]
    assert named[0]["resourceNames"] == ["chat-0", "chat-1", "chat-2"]
    assert set(named[0]["verbs"]) == {"get", "update", "patch", "delete"}
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"]
        assert set(r) >= {"apiGroups", "resources", "verbs"}
    assert "secrets" not in {res for r in rules for res in r["resources"]}
    binding = builders.role_binding(spec())
    assert binding["roleRef"]["name"] == "chat-runtime"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "chat-runtime", "namespace": "team"}
    ]


def test_migration_job():
    job = builders.migration_job(spec(), owner())
    rev = spec().migration_revision()
    assert job["metadata"]["name"] == f"chat-migrate-{rev}" and len(job["metadata"]["name"]) <= 63
    assert job["spec"]["backoffLimit"] == 3 and job["spec"]["ttlSecondsAfterFinished"] > 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["command"] == ["threadweaver", "migrate"]
    env = env_dict(c)
    assert (
        env["THREADWEAVER_READ_MODEL"]
        == "mysql+aiomysql://threadweaver@mysql.team.svc:3306/threadweaver"
    )
    assert env["THREADWEAVER_READ_MODEL_PASSWORD_FILE"] == builders.PASSWORD_FILE
    assert "THREADWEAVER_JOURNAL" not in env and "AWS_ACCESS_KEY_ID" not in env
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # the template is immutable: a new image means a new Job; replicas do not
    assert spec(image="other:2").migration_revision() != rev
    assert spec(replicas=7).migration_revision() == rev


def test_shardmap_configmap_round_trips():
    m = ShardMap.initial(1024, ["chat-0", "chat-1", "chat-2"])
    cm = builders.shardmap_configmap(spec(), m, owner())
    assert cm["metadata"]["name"] == "chat-shardmap"
    assert ShardMap.from_json(cm["data"][SHARDMAP_KEY]) == m


def test_manifests_are_plain_yaml_with_labels():
    s = spec()
    objs = builders.runtime_objects(s, 3, owner()) + [
        builders.statefulset(s, 3, owner()),
        builders.migration_job(s, owner()),
        builders.peer_token_secret(s, "t", owner()),
    ]
    for obj in objs:
        assert yaml.safe_load(yaml.safe_dump(obj)) == obj
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "chat"
        assert labels["app.kubernetes.io/managed-by"] == "threadweaver-operator"
        assert obj["metadata"]["ownerReferences"][0]["controller"] is True


def test_problems_name_the_field():
    assert any("replicas" in p for p in spec(replicas=5000, shards=16).problems())
    assert any(
        "billingMode" in p
        for p in spec(journal={"dynamodb": {"billingMode": "PROVISIONED"}}).problems()
    )
    assert any(
        "endpoint" in p for p in spec(journal={"dynamodb": {"endpoint": "ftp://x"}}).problems()
    )
    assert ClusterSpec.from_resource(
        "x" * 41, "ns", {"image": "i", "readModel": {"mysql": {"host": "h"}}}
    ).problems()


def test_wrong_types_raise_spec_error():
    import pytest

    from threadweaver_operator.spec import SpecError

    with pytest.raises(SpecError, match=r"spec\.replicas"):
        ClusterSpec.from_resource("c", "n", {"image": "i", "replicas": "three"})
    with pytest.raises(SpecError, match=r"spec\.readModel"):
        ClusterSpec.from_resource("c", "n", {"image": "i", "readModel": "db"})


def test_names():
    assert names.ordinal("chat", "chat-12") == 12
    assert names.ordinal("chat", "chat-x") is None and names.ordinal("chat", "chatter-1") is None
    assert names.ordinal("chat", "chat-01") is None
    assert (
        names.selector_string("chat")
        == "app.kubernetes.io/name=thread-weaver,app.kubernetes.io/instance=chat,app.kubernetes.io/component=runtime"
    )


def _flags(command: str) -> set[str]:
    from threadweaver.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {opt for action in sub._actions for opt in action.option_strings}


def test_every_threadweaver_variable_is_a_runtime_flag():
    """The env contract: each THREADWEAVER_X the operator sets is `threadweaver serve --x`."""
    s = spec()
    for container, command in [
        (builders.statefulset(s, 1)["spec"]["template"]["spec"]["containers"][0], "serve"),
        (builders.migration_job(s)["spec"]["template"]["spec"]["containers"][0], "migrate"),
    ]:
        flags = _flags(command)
        for name in env_dict(container):
            if name.startswith("THREADWEAVER_"):
                flag = "--" + name[len("THREADWEAVER_") :].lower().replace("_", "-")
                assert flag in flags, f"{name}: `threadweaver {command}` has no {flag}"


def test_runtime_settings_accept_the_values():
    """The literal values the operator sets parse into valid runtime Settings."""
    import os

    from threadweaver.cli import build_parser, settings_from

    env = {
        k: v
        for k, v in env_dict(
            builders.statefulset(spec(), 1)["spec"]["template"]["spec"]["containers"][0]
        ).items()
        if isinstance(v, str)
        and k.startswith("THREADWEAVER_")
        and "$(" not in v
        and not k.endswith("_FILE")
    }
    old = dict(os.environ)
    try:
        os.environ.update(env)
        settings = settings_from(build_parser().parse_args(["serve"]))
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert (
        settings.cluster.name == "chat"
        and settings.storage.shards == 1024
        and settings.server.port == 8080
    )
    assert settings.storage.journal.startswith("dynamodb://")
    assert settings.storage.auto_migrate is False

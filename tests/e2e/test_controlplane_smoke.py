"""Smoke tests of the e2e cluster (hack/controlplane.sh or the user's KUBECONFIG): the API
semantics the operator relies on are real (structural schemas, pruning, status subresource,
printer columns, optimistic concurrency) and workloads reach Running (scheduler + KWOK)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

GROUP = "smoke.threadweaver.io"
CRD_NAME = f"widgets.{GROUP}"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wdg"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {
                                        "type": "string",
                                        "enum": ["red", "green", "blue"],
                                        "default": "red",
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def crd(kube) -> str:
    kube.apply(CRD)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    # Discovery can lag behind Established by a moment.
    kube.eventually(
        lambda: kube.kubectl("get", "widgets", "-A", check=False).returncode == 0,
        timeout=30,
        what="widgets in discovery",
    )
    return CRD_NAME


def test_version_reports_the_stamped_release(kube) -> None:
    info = json.loads(kube.kubectl("get", "--raw", "/version").stdout)
    assert re.fullmatch(r"v1\.\d+\.\d+.*", info["gitVersion"]), info
    if not kube.external:
        gomod = (ROOT / "hack" / "controlplane" / "go.mod").read_text()
        pinned = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", gomod, re.M).group(1)
        assert info["gitVersion"] == pinned
        assert (info["major"], info["minor"]) == ("1", pinned.split(".")[1])
        client_version = json.loads(kube.kubectl("version", "--client", "-o", "json").stdout)
        assert client_version["clientVersion"]["gitVersion"] == pinned


def test_invalid_object_is_rejected(kube, crd: str, kube_namespace: str) -> None:
    for bad, field_path in [
        (widget("w-big", size=11), "spec.size"),
        (widget("w-color", size=1, color="purple"), "spec.color"),
        (widget("w-nosize", color="red"), "spec.size"),
        (widget("w-type", size="three"), "spec.size"),
    ]:
        with pytest.raises(kube.Error) as err:
            kube.apply(bad, namespace=kube_namespace)
        assert "is invalid" in err.value.proc.stderr and field_path in err.value.proc.stderr, (
            err.value
        )
    assert kube.kubectl("get", "widgets", "-n", kube_namespace, "-o", "name").stdout.strip() == ""


def test_unknown_fields_are_pruned_and_defaults_applied(
    kube, crd: str, kube_namespace: str
) -> None:
    obj = widget("w-prune", size=3, extra="dropped")
    obj["nonsense"] = {"a": 1}
    # --validate=ignore: no client-side or strict server-side field validation, so the server
    # accepts the object and prunes what its schema does not know.
    kube.kubectl(
        "create", "-n", kube_namespace, "--validate=ignore", "-f", "-", input=json.dumps(obj)
    )
    stored = kube.kubectl_json("get", "widget", "w-prune", "-n", kube_namespace)
    assert stored["spec"] == {"size": 3, "color": "red"}
    assert "nonsense" not in stored
    # With strict validation (kubectl's default) the unknown field is an error instead.
    with pytest.raises(kube.Error) as err:
        kube.kubectl(
            "create",
            "-n",
            kube_namespace,
            "-f",
            "-",
            input=json.dumps(widget("w-strict", size=1, extra=1)),
        )
    assert 'unknown field "spec.extra"' in err.value.proc.stderr


def test_status_subresource(kube, crd: str, kube_namespace: str) -> None:
    kube.apply(widget("w-status", size=2), namespace=kube_namespace)
    before = kube.kubectl_json("get", "widget", "w-status", "-n", kube_namespace)
    # Through the main resource, status changes are ignored...
    kube.kubectl(
        "patch",
        "widget",
        "w-status",
        "-n",
        kube_namespace,
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ignored"}}',
    )
    assert "status" not in kube.kubectl_json("get", "widget", "w-status", "-n", kube_namespace)
    # ...through /status they apply, without touching spec or the generation.
    kube.kubectl(
        "patch",
        "widget",
        "w-status",
        "-n",
        kube_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}, "spec": {"size": 9}}',
    )
    after = kube.kubectl_json("get", "widget", "w-status", "-n", kube_namespace)
    assert after["status"] == {"phase": "Ready"}
    assert after["spec"]["size"] == 2
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    kube.kubectl(
        "patch",
        "widget",
        "w-status",
        "-n",
        kube_namespace,
        "--type=merge",
        "-p",
        '{"spec": {"size": 4}}',
    )
    bumped = kube.kubectl_json("get", "widget", "w-status", "-n", kube_namespace)
    assert bumped["metadata"]["generation"] == before["metadata"]["generation"] + 1


def test_printer_columns(kube, crd: str, kube_namespace: str) -> None:
    kube.apply(widget("w-print", size=5, color="blue"), namespace=kube_namespace)
    kube.kubectl(
        "patch",
        "widget",
        "w-print",
        "-n",
        kube_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Shiny"}}',
    )
    lines = kube.kubectl("get", "wdg", "-n", kube_namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "COLOR", "PHASE"], lines
    assert lines[1].split() == ["w-print", "5", "blue", "Shiny"], lines


def test_stale_resource_version_conflicts_with_409(kube, crd: str, kube_namespace: str) -> None:
    kube.apply(widget("w-rv", size=1), namespace=kube_namespace)
    stale = kube.kubectl_json("get", "widget", "w-rv", "-n", kube_namespace)
    kube.kubectl(
        "patch",
        "widget",
        "w-rv",
        "-n",
        kube_namespace,
        "--type=merge",
        "-p",
        '{"spec": {"size": 2}}',
    )
    stale["spec"]["size"] = 3
    with pytest.raises(kube.Error) as err:
        kube.kubectl("replace", "-v=6", "-f", "-", input=json.dumps(stale))
    assert "the object has been modified" in err.value.proc.stderr
    # kubectl -v=6 logs each response: the PUT itself got HTTP 409 (reason Conflict).
    assert re.search(
        r'verb="PUT" url="[^"]*/widgets/w-rv(\?[^"]*)?" status="409 Conflict"',
        err.value.proc.stderr,
    ), err.value.proc.stderr


async def test_conflict_through_kubernetes_asyncio(kube, kube_namespace: str) -> None:
    """The in-process client (as the operator and runtime use it) reaches the cluster with the
    same kubeconfig and sees the 409 as an ApiException."""
    cfg = client.Configuration()
    await config.load_kube_config(config_file=kube.kubeconfig, client_configuration=cfg)
    async with client.ApiClient(configuration=cfg) as api:
        core = client.CoreV1Api(api)
        name = f"cm-{uuid.uuid4().hex[:6]}"
        created = await core.create_namespaced_config_map(
            kube_namespace, {"metadata": {"name": name}, "data": {"k": "1"}}
        )
        await core.patch_namespaced_config_map(name, kube_namespace, {"data": {"k": "2"}})
        created.data = {"k": "3"}
        with pytest.raises(ApiException) as err:
            await core.replace_namespaced_config_map(name, kube_namespace, created)
        assert err.value.status == 409
        assert (await core.read_namespaced_config_map(name, kube_namespace)).data == {"k": "2"}


def test_statefulset_pods_become_running(kube, kube_namespace: str) -> None:
    labels = {"app": "smoke"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "smoke"},
        "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "http", "port": 80}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "smoke"},
        "spec": {
            "serviceName": "smoke",
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            "readinessProbe": {"tcpSocket": {"port": 80}},
                        }
                    ]
                },
            },
        },
    }
    kube.apply(service, sts, namespace=kube_namespace)

    def running() -> list[dict] | None:
        pods = kube.kubectl_json("get", "pods", "-n", kube_namespace, "-l", "app=smoke")["items"]
        ok = [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return ok if len(ok) == 3 else None

    pods = kube.eventually(
        running, timeout=120, interval=1, what="3 Running and Ready pods of the StatefulSet"
    )
    assert sorted(p["metadata"]["name"] for p in pods) == ["smoke-0", "smoke-1", "smoke-2"]
    assert all(p["spec"].get("nodeName") for p in pods)
    kube.eventually(
        lambda: (
            kube.kubectl_json("get", "statefulset", "smoke", "-n", kube_namespace)["status"].get(
                "readyReplicas"
            )
            == 3
        ),
        timeout=60,
        what="readyReplicas == 3",
    )


def test_helm_installs_a_chart(kube, kube_namespace: str, tmp_path) -> None:
    version = kube.helm_run("version", "--short").stdout
    assert version.startswith("v3."), version
    kube.helm_run("create", tmp_path / "smokechart")
    kube.helm_run(
        "install",
        "smoke",
        tmp_path / "smokechart",
        "-n",
        kube_namespace,
        "--wait",
        "--timeout",
        "120s",
    )
    releases = json.loads(kube.helm_run("list", "-n", kube_namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("smoke", "deployed")]
    deploy = kube.kubectl_json("get", "deployment", "smoke-smokechart", "-n", kube_namespace)
    assert deploy["status"].get("readyReplicas") == 1
    kube.helm_run("uninstall", "smoke", "-n", kube_namespace, "--wait")

"""The operator and the runtime on running containers: the local plane's kubelet node runs the
operator (Helm chart, in the cluster), MariaDB and dynalite (config/samples/local-services.yaml)
and a 3-replica ThreadWeaverCluster made from config/samples/threadweavercluster-local.yaml.
The tests of this module share that cluster and run in order: the migration Job, commands and
queries through the Service, readiness gating, then moves under a steady load (scale 3 -> 5 ->
2, kubectl delete pod, SIGKILL through containerd, a rolling update to a new image tag, a
drain through the eviction API with the PDB). After each move: nothing acknowledged lost or
doubled, only 503 + Retry-After while members move, each thread's journal gap-free, the read
model equal to the journal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from realpods_support import (
    NODE,
    ROOT,
    SHARDS,
    Load,
    check_consistency,
    sample_cluster,
    start_backing,
    wait,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
NAME = "rp"


def kj(kube, *args) -> dict:
    return json.loads(kube.kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def ns(watched) -> str:
    return watched[0]


@pytest.fixture(scope="module")
def backing(kube, in_cluster_operator, ns):
    return start_backing(kube, ns)


def twc(kube, ns, name=NAME) -> dict:
    return kj(kube, "get", "twc", name, "-n", ns)


def ready_pods(kube, ns, name=NAME) -> list[dict]:
    pods = kj(kube, "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def converged(kube, ns, replicas: int, image: str | None = None, name=NAME) -> bool:
    t = twc(kube, ns, name)
    st = t.get("status") or {}
    ready = {c["type"]: c["status"] for c in st.get("conditions", [])}
    pods = ready_pods(kube, ns, name)
    if image and any(p["spec"]["containers"][0]["image"] != image for p in pods):
        return False
    return (
        st.get("phase") == "Running"
        and st.get("readyReplicas") == replicas
        and ready.get("Ready") == "True"
        and ready.get("Rebalancing") != "True"
        and len(pods) == replicas
    )


def dump(kube, ns) -> str:
    out = [
        kube.kubectl(
            "get", "twc,sts,pods,jobs,pdb,endpointslices", "-n", ns, "-o", "wide", check=False
        ).stdout,
        kube.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout[
            -4000:
        ],
    ]
    return "\n".join(out)


@pytest.fixture(scope="module")
def cluster(kube, backing, ns):
    kube.apply(*sample_cluster(NAME, shards=SHARDS), namespace=ns)
    t0 = time.monotonic()
    asyncio.run(
        wait(
            lambda: converged(kube, ns, 3), 420, "3 ready replicas", on_fail=lambda: dump(kube, ns)
        )
    )
    print(f"\n{NAME}: 3 replicas Ready {time.monotonic() - t0:.0f}s after apply")
    svc = kj(kube, "get", "svc", NAME, "-n", ns)
    port = next(p["port"] for p in svc["spec"]["ports"] if p.get("name") in ("http", None))
    return f"http://{svc['spec']['clusterIP']}:{port}"


@pytest.fixture(scope="module")
def bad_migration(kube, watched, in_cluster_operator) -> str:
    """A second cluster whose migration cannot log in to MariaDB (wrong password), applied at
    the start so that the Job's retries (backoff 10 s, 20 s, 40 s) run beside the other tests."""
    ns = watched[1]
    start_backing(kube, ns)
    docs = sample_cluster("badmig", shards=SHARDS)
    for d in docs:
        if d["kind"] == "Secret" and d["metadata"]["name"] == "badmig-mysql":
            d["stringData"]["password"] = "not-the-password"
    kube.apply(*docs, namespace=ns)
    return ns


def test_operator_runs_in_the_cluster_from_its_image(kube, in_cluster_operator, bad_migration):
    pods = kj(kube, "get", "pods", "-n", in_cluster_operator)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] == NODE
    assert pod["spec"]["containers"][0]["image"] == "localhost/thread-weaver:dev"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["containerID"].startswith("containerd://")
    logs = kube.kubectl("logs", "-n", in_cluster_operator, pod["metadata"]["name"]).stdout
    assert logs.strip(), "the operator container wrote no log"
    uid = kube.kubectl(
        "exec", "-n", in_cluster_operator, pod["metadata"]["name"], "--", "id", "-u"
    ).stdout
    assert uid.strip() == "10001"


def test_migration_job_ran_the_image_against_mariadb(kube, ns, cluster):
    jobs = kj(kube, "get", "jobs", "-n", ns)["items"]
    assert jobs, "no migration Job"
    job = jobs[-1]
    assert job["status"].get("succeeded") == 1, job["status"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "thread-weaver:dev"
    pods = kj(kube, "get", "pods", "-n", ns, "-l", f"job-name={job['metadata']['name']}")["items"]
    assert pods and pods[0]["spec"]["nodeName"] == NODE
    logs = kube.kubectl("logs", "-n", ns, pods[0]["metadata"]["name"]).stdout
    assert "at the latest schema revision" in logs and "@mariadb:3306" in logs, logs[-2000:]
    conds = {c["type"]: c for c in twc(kube, ns)["status"]["conditions"]}
    assert conds["Migrated"]["status"] == "True", conds["Migrated"]


def test_commands_and_queries_through_the_service(kube, ns, backing, cluster):
    async def scenario() -> str:
        async with Load(cluster, clients=3) as load:
            await asyncio.sleep(5)
            await load.finish()
        tid, admin = next(iter(load.threads.items()))
        # The read model follows the journal: the query answers once the thread is projected.
        status, thread = await wait(
            lambda: _get_json(f"{cluster}/v1/threads/{tid}?account_id={admin}"),
            60,
            "the thread through the query API",
        )
        assert status == 200 and thread["result"]["id"] == tid, thread
        return await check_consistency(load, backing.dynamodb_url, NAME, backing.read_model_url)

    print("\n" + asyncio.run(scenario()))


def _get_json(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def test_readiness_gates_traffic(kube, ns, cluster):
    """A replaced member is not an endpoint of the Service until its /ready probe passes."""
    victim = f"{NAME}-1"
    old_uid = kj(kube, "get", "pod", victim, "-n", ns)["metadata"]["uid"]
    kube.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
    seen_unready = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        # The Service's ready endpoints first, then the pod: an address listed ready must
        # belong to a pod that was Ready already (the endpoint controller follows the pod).
        endpoints = _ready_endpoint_ips(kube, ns)
        pod = kj(kube, "get", "pod", victim, "-n", ns) if _exists(kube, ns, victim) else None
        if pod and pod["metadata"]["uid"] != old_uid and pod["status"].get("podIP"):
            ip = pod["status"]["podIP"]
            pod_ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions", [])
            )
            if pod_ready:
                break
            seen_unready = True
            assert ip not in endpoints, f"{victim} ({ip}) is an endpoint before it is Ready"
        time.sleep(0.3)
    else:
        raise AssertionError(dump(kube, ns))
    assert seen_unready, "never saw the new pod before it was Ready"
    asyncio.run(
        wait(
            lambda: converged(kube, ns, 3),
            240,
            "3 ready replicas again",
            on_fail=lambda: dump(kube, ns),
        )
    )


def _exists(kube, ns, pod) -> bool:
    return kube.kubectl("get", "pod", pod, "-n", ns, check=False).returncode == 0


def _ready_endpoint_ips(kube, ns) -> set[str]:
    slices = kj(
        kube, "get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={NAME}"
    )["items"]
    return {
        a
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for a in e["addresses"]
    }


async def _under_load(kube, ns, backing, url, move, replicas: int, image: str | None = None) -> str:
    async with Load(url) as load:
        await asyncio.sleep(3)
        await move()
        await wait(
            lambda: converged(kube, ns, replicas, image),
            360,
            f"{replicas} ready replicas",
            on_fail=lambda: dump(kube, ns),
        )
        await asyncio.sleep(3)
        await load.finish()
    assert load.acked > 50, load.summary()
    return await check_consistency(load, backing.dynamodb_url, NAME, backing.read_model_url)


def test_scale_3_5_2_under_load(kube, ns, backing, cluster):
    async def scenario():
        out = []
        for replicas in (5, 2):

            async def move(r=replicas):
                await asyncio.to_thread(
                    kube.kubectl, "scale", "twc", NAME, "-n", ns, f"--replicas={r}"
                )

            out.append(
                f"-> {replicas}: " + await _under_load(kube, ns, backing, cluster, move, replicas)
            )
        return out

    for line in asyncio.run(scenario()):
        print("\n" + line)
    kube.kubectl("scale", "twc", NAME, "-n", ns, "--replicas=3")
    asyncio.run(
        wait(
            lambda: converged(kube, ns, 3), 360, "3 ready replicas", on_fail=lambda: dump(kube, ns)
        )
    )


def test_kubectl_delete_pod_under_load(kube, ns, backing, cluster):
    async def move():
        await asyncio.to_thread(
            kube.kubectl, "delete", "pod", f"{NAME}-0", "-n", ns, "--wait=false"
        )

    print("\n" + asyncio.run(_under_load(kube, ns, backing, cluster, move, 3)))


def test_container_killed_hard_through_the_runtime(kube, ns, backing, cluster):
    pod = kj(kube, "get", "pod", f"{NAME}-2", "-n", ns)
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    ctr = [
        str(ROOT / ".cache" / "controlplane" / "bin" / "current" / "ctr"),
        "--address",
        str(ROOT / ".cache" / "controlplane" / "run" / "node" / "containerd" / "containerd.sock"),
        "-n",
        "k8s.io",
    ]

    async def move():
        await asyncio.to_thread(
            subprocess.run,
            [*ctr, "tasks", "kill", "--signal", "SIGKILL", cid],
            check=True,
            capture_output=True,
        )
        await wait(
            lambda: (
                kj(kube, "get", "pod", f"{NAME}-2", "-n", ns)["status"]["containerStatuses"][0][
                    "restartCount"
                ]
                > restarts
            ),
            120,
            "the killed container to restart",
        )

    print("\n" + asyncio.run(_under_load(kube, ns, backing, cluster, move, 3)))


def test_rolling_update_to_a_new_image_tag(kube, ns, backing, cluster):
    ctr = [
        str(ROOT / ".cache" / "controlplane" / "bin" / "current" / "ctr"),
        "--address",
        str(ROOT / ".cache" / "controlplane" / "run" / "node" / "containerd" / "containerd.sock"),
        "-n",
        "k8s.io",
    ]
    subprocess.run(
        [
            *ctr,
            "images",
            "tag",
            "--force",
            "docker.io/library/thread-weaver:dev",
            "docker.io/library/thread-weaver:rolled",
        ],
        check=True,
        capture_output=True,
    )

    async def move():
        await asyncio.to_thread(
            kube.kubectl,
            "patch",
            "twc",
            NAME,
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec":{"image":"thread-weaver:rolled"}}',
        )

    print(
        "\n"
        + asyncio.run(
            _under_load(kube, ns, backing, cluster, move, 3, image="thread-weaver:rolled")
        )
    )


def test_drain_through_the_eviction_api_honours_the_pdb(kube, ns, backing, cluster):
    """kubectl drain of the cluster's pods on the (only) real node: the PDB lets one member go
    at a time; with the node cordoned the evicted member cannot come back, so the drain waits
    on the PDB; uncordoned, the members return one by one and the drain completes."""
    selector = f"app.kubernetes.io/instance={NAME}"
    pdb = kj(kube, "get", "pdb", "-n", ns)["items"]
    assert pdb and pdb[0]["spec"].get("maxUnavailable") == 1, pdb

    async def scenario() -> str:
        drain = None

        async def move():
            nonlocal drain
            drain = await asyncio.to_thread(
                subprocess.Popen,
                [
                    kube.kubectl_path,
                    "--kubeconfig",
                    kube.kubeconfig,
                    "drain",
                    NODE,
                    f"--pod-selector={selector}",
                    "--delete-emptydir-data",
                    "--ignore-daemonsets",
                    "--timeout=300s",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            await wait(lambda: len(ready_pods(kube, ns)) == 2, 120, "one member evicted")
            await asyncio.sleep(8)  # the drain keeps asking; the PDB keeps refusing
            assert len(ready_pods(kube, ns)) == 2 and drain.poll() is None
            await asyncio.to_thread(kube.kubectl, "uncordon", NODE)
            await asyncio.to_thread(drain.wait, 330)

        try:
            result = await _under_load(kube, ns, backing, cluster, move, 3)
        finally:
            kube.kubectl("uncordon", NODE, check=False)
        out = drain.stdout.read() if drain and drain.stdout else ""
        assert drain.returncode == 0, out
        assert "disruption budget" in out, out
        return f"{result}; drain: {out.count('evicted')} evictions"

    print("\n" + asyncio.run(scenario()))


def test_failing_migration_blocks_the_rollout(kube, bad_migration):
    """A read model the migration cannot log in to: the Job fails, the cluster says so in a
    condition and an Event, and no runtime pod starts."""
    ns = bad_migration

    def failed():
        conds = {
            c["type"]: c
            for c in (twc(kube, ns, "badmig").get("status") or {}).get("conditions", [])
        }
        m = conds.get("Migrated", {})
        return m.get("status") == "False" and m.get("reason") == "JobFailed" and m

    cond = asyncio.run(
        wait(failed, 400, "Migrated=False after the Job failed", on_fail=lambda: dump(kube, ns))
    )
    events = kj(kube, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=badmig")[
        "items"
    ]
    assert any(e["type"] == "Warning" and "Migration" in e["reason"] for e in events), [
        (e["reason"], e["message"]) for e in events
    ]
    pods = kj(kube, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=badmig")["items"]
    runtime_pods = [p for p in pods if "job-name" not in p["metadata"].get("labels", {})]
    assert not runtime_pods, [p["metadata"]["name"] for p in runtime_pods]
    print(f"\nMigrated: {cond['reason']}: {cond['message'][:200]}")

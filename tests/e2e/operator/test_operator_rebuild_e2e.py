"""Rebuilding the read model with no downtime, on the real API server with real members
(docs/operator.md, "Rebuilding the read model").

Three `threadweaver serve --cluster` processes play the StatefulSet's pods (KWOK runs no
containers), serving database A on MariaDB under steady load: commands through every member,
readers polling every thread through each member and through all of them in turn. The spec's database
becomes B. The operator creates B's migration Job and its project Job; the test runs their
container commands as host processes with the Jobs' environment (as the kubelet would), and the
members, led by the directive beside the shard map, catch B up, hand over and switch together.
At the end: no query failed, no reader saw fewer messages than it had seen before, B holds every
message the commands wrote, A is kept and named in the status.

A failing rebuild: KWOK completes every Job's pod at once, so a MutatingAdmissionPolicy of the
test keeps the project Job's pod off every node and the test fails the Job by its deadline. The
old database keeps serving through every member, with the Rebuilding condition False
(RebuildFailed) and a Warning Event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
from operator_e2e_support import (
    ROOT,
    VENV_BIN,
    apply_yaml,
    cluster_manifest,
    dump,
    events_of,
    eventually,
    get_cluster,
    job_succeeded,
    kubectl,
    migrate_like_the_job,
    secret,
    shard_map,
)

from tests.support.runtime_process import RuntimeProcess
from threadweaver.adapters.readmodel import SqlReadModel
from threadweaver.domain import new_ulid

pytestmark = pytest.mark.e2e

THREADS = 16
PORTS = 27400  # this suite's members listen on 27400 + ordinal (docs: one port range per suite)
MYSQL = "mysql+aiomysql://threadweaver:threadweaver@127.0.0.1:3306"


class Members:
    """One `threadweaver serve` process per existing pod (like a kubelet), on database ``db``."""

    def __init__(self, api, ns, name, prefix, db, tmp_path) -> None:
        self.api, self.ns, self.name, self.prefix, self.db, self.tmp = (
            api,
            ns,
            name,
            prefix,
            db,
            tmp_path,
        )
        self.procs: dict[str, RuntimeProcess] = {}

    def _start(self, member: str) -> RuntimeProcess:
        kubeconfig = os.environ["KUBECONFIG"]
        proc = RuntimeProcess(
            self.tmp / member,
            port=PORTS + int(member.rsplit("-", 1)[1]),
            name=member,
            env={
                "KUBECONFIG": kubeconfig,
                "AWS_ACCESS_KEY_ID": "e2e",
                "AWS_SECRET_ACCESS_KEY": "e2e",
            },
            args=[
                *("--cluster", self.name, "--namespace", self.ns, "--kubeconfig", kubeconfig),
                "--journal",
                f"dynamodb://127.0.0.1:8000?region=us-east-1&table-prefix={self.prefix}",
                *("--read-model", f"{MYSQL}/{self.db}", "--shards", "64"),
                *("--lease-duration", "10", "--lease-renew-every", "1"),
            ],
        )
        proc.args += ["--peer-address", f"127.0.0.1:{proc.port}"]
        return proc.start(wait=False)

    async def sync(self) -> None:
        pods = {
            p["metadata"]["name"]
            for p in await self.api.list(
                "Pod",
                self.ns,
                label_selector=f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component=runtime",
            )
        }
        for member in sorted(pods - set(self.procs)):
            self.procs[member] = self._start(member)
        for member, proc in self.procs.items():
            assert proc.proc.poll() is None, f"{member} exited:\n{proc.log_tail()}"

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        return "".join(f"\n--- {m} ---\n{p.log_tail()}" for m, p in self.procs.items())


async def run_like_the_job(api, ns: str, job_name: str, tmp: Path) -> None:
    """The Job's container command as a host process with its environment (the password file
    written locally, as the kubelet would mount the Secret)."""
    job = await eventually(lambda: api.get("Job", ns, job_name), 120, 0.2, what=job_name)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    pw_file = tmp / f"{job_name}.pw"
    pw_file.write_text("threadweaver")
    env["THREADWEAVER_READ_MODEL_PASSWORD_FILE"] = str(pw_file)
    env["THREADWEAVER_DATA_DIR"] = str(tmp / f"{job_name}-data")
    env.update(AWS_ACCESS_KEY_ID="e2e", AWS_SECRET_ACCESS_KEY="e2e")
    command = [str(VENV_BIN / "threadweaver"), *container["command"][1:]]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THREADWEAVER_")}
    proc = await asyncio.to_thread(
        subprocess.run,
        command,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{command}: {proc.stderr[-3000:]}{proc.stdout[-3000:]}"


def _drop(db: str) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", user="threadweaver", password="threadweaver")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    finally:
        conn.close()


def apply_cluster(ns: str, name: str, prefix: str, db: str) -> None:
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(
            ns,
            name,
            prefix,
            deletionPolicy="Delete",
            readModel={
                "mysql": {
                    "host": "127.0.0.1",
                    "database": db,
                    "passwordSecret": {"name": f"{name}-mysql"},
                }
            },
        ),
    )


async def serve(api, ns: str, name: str, members: Members, fail) -> None:
    """The first migration (run as the Job would), then three members serving, Ready, and
    reachable at the addresses the map gives."""
    job = await migrate_like_the_job(api, ns, name)  # creates and migrates the database
    await job_succeeded(api, ns, job)

    async def serving():
        await members.sync()
        twc = await get_cluster(api, ns, name)
        smap = await shard_map(api, ns, name)
        return (
            (twc.get("status") or {}).get("phase") == "Running"
            and smap is not None
            and not smap.in_handoff
            and sorted(smap.assignments) == sorted(members.procs)
            and len(members.procs) == 3
            and all(  # forwarding uses the addresses the members advertise
                smap.address_of(m) == p.url.removeprefix("http://")
                for m, p in members.procs.items()
            )
        )

    await eventually(serving, 240, 1.0, what="3 members serving", on_fail=fail)
    for proc in members.procs.values():
        await asyncio.to_thread(proc.wait_ready, 60)


def point_at(ns: str, name: str, db: str) -> None:
    patch = {"spec": {"readModel": {"mysql": {"database": db}}}}
    kubectl("patch", "twc", name, "-n", ns, "--type=merge", "-p", json.dumps(patch))


@pytest.mark.timeout(900)
async def test_a_rebuild_under_load_switches_without_downtime(
    operator, services, ns, api, tmp_path
):
    name, prefix = "rebuild", f"e2e-{uuid.uuid4().hex[:8]}"
    old_db, new_db = (f"tw_{uuid.uuid4().hex[:10]}_{x}" for x in "ab")
    apply_cluster(ns, name, prefix, old_db)
    members = Members(api, ns, name, prefix, old_db, tmp_path)
    fail = lambda: dump(ns, name, operator) + members.logs()  # noqa: E731
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        await serve(api, ns, name, members, fail)
        job = next(
            j["metadata"]["name"]
            for j in await api.list("Job", ns)
            if j["metadata"]["name"].startswith(f"{name}-migrate-")
        )
        urls = [members.procs[m].url for m in sorted(members.procs)]
        admin = new_ulid()
        sent: dict[str, int] = {}
        failures: list[str] = []
        regressions: list[str] = []
        async with aiohttp.ClientSession() as http:
            for i in range(THREADS):
                async with http.post(
                    f"{urls[i % 3]}/v1/threads/create",
                    json={
                        "accountId": admin,
                        "title": f"t{i}",
                        "administratorIds": [admin],
                        "memberIds": [],
                        "createAt": 1,
                    },
                ) as r:
                    assert r.status == 200, await r.text()
                    sent[(await r.json())["thread_id"]] = 0
            threads = list(sent)

            async def count(url: str, tid: str) -> int | None:
                async with http.get(
                    f"{url}/v1/threads/{tid}/messages",
                    params={"account_id": admin, "limit": "1000"},
                ) as r:
                    if r.status == 404:
                        return None
                    if r.status != 200:
                        failures.append(f"{url} {tid}: {r.status} {await r.text()}")
                        return None
                    return len((await r.json())["result"])

            async def visible():
                return all([await count(urls[0], tid) is not None for tid in threads])

            await eventually(visible, 60, 0.5, what="the threads in A", on_fail=fail)

            async def write() -> None:
                i = 0
                while not stop.is_set():
                    tid = threads[i % THREADS]
                    async with http.post(
                        f"{urls[i % 3]}/v1/threads/{tid}/messages/add",
                        json={
                            "accountId": admin,
                            "createAt": 2,
                            "messages": [{"text": f"m{i}", "toAccountIds": []}],
                        },
                    ) as r:
                        if r.status == 200:
                            sent[tid] += 1
                        elif r.status != 503:  # a handoff's Retry-After is retried
                            failures.append(f"command: {r.status} {await r.text()}")
                    i += 1
                    await asyncio.sleep(0.05)

            async def read(order: list[str]) -> None:
                seen = dict.fromkeys(threads, 0)
                i = 0
                while not stop.is_set():
                    tid, url = threads[i % THREADS], order[i % len(order)]
                    try:
                        n = await count(url, tid)
                    except aiohttp.ClientError as exc:
                        failures.append(f"{url}: {exc!r}")
                        n = None
                    if n is None:
                        failures.append(f"{url} {tid}: not visible")
                    elif n < seen[tid]:
                        regressions.append(f"{tid} on {url}: {n} messages after {seen[tid]}")
                    else:
                        seen[tid] = n
                    i += 1
                    await asyncio.sleep(0.02)

            tasks = [asyncio.create_task(write())]
            tasks += [asyncio.create_task(read([u])) for u in urls]
            tasks.append(asyncio.create_task(read(urls)))
            await asyncio.sleep(3)

            point_at(ns, name, new_db)  # the rebuild starts
            twc = await eventually(
                lambda: _rebuild(api, ns, name),
                60,
                0.5,
                what="status.readModel.rebuild",
                on_fail=fail,
            )
            rebuild = twc["status"]["readModel"]["rebuild"]
            assert rebuild["database"] == new_db and rebuild["previousDatabase"] == old_db
            jobs = {j["metadata"]["name"] for j in await api.list("Job", ns)}
            migration = next(j for j in jobs if j.startswith(f"{name}-migrate-") and j != job)
            await run_like_the_job(api, ns, migration, tmp_path)  # creates and migrates B
            project = migration.replace("-migrate-", "-project-")
            await run_like_the_job(api, ns, project, tmp_path)  # fills B from the journal

            async def switched():
                await members.sync()
                twc = await get_cluster(api, ns, name)
                rm = (twc.get("status") or {}).get("readModel") or {}
                return rm.get("database") == new_db and rm["rebuild"]["phase"] == "Complete"

            await eventually(switched, 300, 0.5, what="the switch to B", on_fail=fail)
            await asyncio.sleep(4)  # past switchAt, still under load
            stop.set()
            await asyncio.gather(*tasks)

            twc = await get_cluster(api, ns, name)
            status = twc["status"]
            assert status["readModel"]["previousDatabase"] == old_db
            condition = next(c for c in status["conditions"] if c["type"] == "Rebuilding")
            assert (condition["status"], condition["reason"]) == ("False", "Switched")
            assert status["phase"] == "Running"
            reasons = {e["reason"] for e in events_of(ns, name)}
            stages = ("RebuildStarted", "RebuildProjecting", "RebuildCatchingUp")
            assert {*stages, "RebuildHandingOver", "RebuildSwitched"} <= reasons, reasons
            assert not failures, failures[:10]
            assert not regressions, regressions[:10]

            # every member's queries and RMUs are on B
            for member in members.procs:
                lease = await api.get("Lease", ns, member)
                report = lease["metadata"]["annotations"]["threadweaver.io/read-model"]
                assert f'"queries":"{new_db}"' in report and f'"rmus":"{new_db}"' in report

            # B equals the journal: every message a command wrote, through every member
            async def complete():
                for url in urls:
                    for tid in threads:
                        if await count(url, tid) != sent[tid]:
                            return False
                return True

            await eventually(complete, 60, 0.5, what="B holding every message", on_fail=fail)
        # A is kept, as it was when the RMUs left it
        old = SqlReadModel(f"{MYSQL}/{old_db}")
        await old.start()
        try:
            counts = [len(await old.list_messages(t, admin, 0, 1000) or []) for t in threads]
            assert sum(counts) > 0
        finally:
            await old.close()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(members.stop)
        for db in (old_db, new_db):
            with contextlib.suppress(Exception):
                _drop(db)


async def _rebuild(api, ns, name):
    twc = await get_cluster(api, ns, name)
    return twc if ((twc or {}).get("status") or {}).get("readModel", {}).get("rebuild") else None


def hold_rebuild_pods(ns: str) -> str:
    """A MutatingAdmissionPolicy that keeps the project Job's pods of namespace ``ns`` off every
    node (KWOK would complete them at once): the test can then fail that Job by its deadline."""
    name = f"hold-rebuild-{ns}"[:63]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "matchConditions": [
                {
                    "name": "rebuild-pods",
                    "expression": "has(object.metadata.labels) && "
                    "object.metadata.labels.exists(k, k == 'app.kubernetes.io/component') && "
                    "object.metadata.labels['app.kubernetes.io/component'] == 'rebuild'",
                }
            ],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [
                {
                    "patchType": "ApplyConfiguration",
                    "applyConfiguration": {
                        "expression": "Object{spec: Object.spec{nodeSelector: "
                        '{"threadweaver-e2e-hold": "true"}}}'
                    },
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}
            },
        },
    }
    apply_yaml(policy, binding)
    return name


@pytest.mark.timeout(600)
async def test_a_failed_rebuild_keeps_the_old_database_serving(
    operator, services, ns, api, tmp_path
):
    name, prefix = "rebuildfail", f"e2e-{uuid.uuid4().hex[:8]}"
    old_db, new_db = (f"tw_{uuid.uuid4().hex[:10]}_{x}" for x in "cd")
    apply_cluster(ns, name, prefix, old_db)
    members = Members(api, ns, name, prefix, old_db, tmp_path)
    fail = lambda: dump(ns, name, operator) + members.logs()  # noqa: E731
    policy = hold_rebuild_pods(ns)
    try:
        await serve(api, ns, name, members, fail)
        urls = [p.url for p in members.procs.values()]
        admin = new_ulid()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{urls[0]}/v1/threads/create",
                json={
                    "accountId": admin,
                    "title": "t",
                    "administratorIds": [admin],
                    "memberIds": [],
                    "createAt": 1,
                },
            ) as r:
                assert r.status == 200, await r.text()
                tid = (await r.json())["thread_id"]

            point_at(ns, name, new_db)
            twc = await eventually(lambda: _rebuild(api, ns, name), 60, 0.5, what="the rebuild")
            migration = next(
                j["metadata"]["name"]
                for j in await api.list("Job", ns)
                if j["metadata"]["name"].startswith(f"{name}-migrate-")
                and twc["status"]["readModel"]["rebuild"]["revision"] in j["metadata"]["name"]
            )
            await run_like_the_job(api, ns, migration, tmp_path)
            project = migration.replace("-migrate-", "-project-")
            await eventually(lambda: api.get("Job", ns, project), 120, 0.5, what=project)
            # its pod stays Pending (the policy): the Job fails by its deadline
            kubectl(
                "patch", "job", project, "-n", ns, "--type=merge",
                "-p", '{"spec":{"activeDeadlineSeconds":1}}',
            )  # fmt: skip

            async def failed():
                await members.sync()
                twc = await get_cluster(api, ns, name)
                rm = (twc.get("status") or {}).get("readModel") or {}
                return twc if (rm.get("rebuild") or {}).get("phase") == "Failed" else None

            twc = await eventually(failed, 120, 0.5, what="the rebuild failed", on_fail=fail)
            status = twc["status"]
            assert status["readModel"]["database"] == old_db
            condition = next(c for c in status["conditions"] if c["type"] == "Rebuilding")
            assert (condition["status"], condition["reason"]) == ("False", "RebuildFailed")
            assert project in condition["message"] and old_db in condition["message"]
            assert status["phase"] != "Failed"

            async def warned():
                return [
                    e
                    for e in events_of(ns, name)
                    if e["reason"] == "RebuildFailed" and e["type"] == "Warning"
                ]

            await eventually(warned, 30, 0.5, what="the RebuildFailed Event", on_fail=fail)
            cm = await api.get("ConfigMap", ns, f"{name}-shardmap")
            assert json.loads(cm["data"]["readmodel.json"]) == {"serving": old_db}

            # the old database still serves, through every member, and takes new messages
            async with http.post(
                f"{urls[1]}/v1/threads/{tid}/messages/add",
                json={
                    "accountId": admin,
                    "createAt": 2,
                    "messages": [{"text": "after", "toAccountIds": []}],
                },
            ) as r:
                assert r.status == 200, await r.text()

            async def served():
                for url in urls:
                    async with http.get(
                        f"{url}/v1/threads/{tid}/messages", params={"account_id": admin}
                    ) as r:
                        if r.status != 200 or len((await r.json())["result"]) != 1:
                            return False
                return True

            await eventually(served, 60, 0.5, what="the old database serving", on_fail=fail)
            for member in members.procs:
                lease = await api.get("Lease", ns, member)
                report = json.loads(lease["metadata"]["annotations"]["threadweaver.io/read-model"])
                assert report == {"queries": old_db, "rmus": old_db}
    finally:
        kubectl("delete", "mutatingadmissionpolicybinding,mutatingadmissionpolicy", policy,
                "--ignore-not-found", check=False)  # fmt: skip
        await asyncio.to_thread(members.stop)
        for db in (old_db, new_db):
            with contextlib.suppress(Exception):
                _drop(db)

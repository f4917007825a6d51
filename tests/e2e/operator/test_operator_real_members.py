"""Scaling 3 -> 5 -> 2 with real runtime members: for every pod of the operator's StatefulSet
(KWOK runs no containers) the test runs `threadweaver serve --cluster` as a local process named
after the pod, against the same API server, dynalite and MariaDB. The members write their own
Leases, watch the shard map, hand off and acknowledge epochs; the operator drives them."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import aiohttp
import pytest
from operator_e2e_support import (
    apply_yaml,
    cluster_manifest,
    dump,
    eventually,
    get_cluster,
    job_succeeded,
    kubectl,
    migrate_like_the_job,
    secret,
    shard_map,
)

from tests.support.runtime_process import RuntimeProcess
from threadweaver.domain import new_ulid

pytestmark = pytest.mark.e2e


class Members:
    """Keeps one `threadweaver serve` process per existing pod (like a kubelet would)."""

    def __init__(self, api, ns, name, prefix, tmp_path) -> None:
        self.api, self.ns, self.name, self.prefix, self.tmp = api, ns, name, prefix, tmp_path
        self.procs: dict[str, RuntimeProcess] = {}

    def _start(self, member: str) -> RuntimeProcess:
        proc = RuntimeProcess(
            self.tmp / member,
            name=member,
            env={"KUBECONFIG": os.environ["KUBECONFIG"]},
            args=[
                "--cluster",
                self.name,
                "--namespace",
                self.ns,
                "--kubeconfig",
                os.environ["KUBECONFIG"],
                "--journal",
                f"dynamodb://127.0.0.1:8000?region=us-east-1&table-prefix={self.prefix}",
                "--read-model",
                "mysql+aiomysql://threadweaver:threadweaver@127.0.0.1:3306/threadweaver",
                "--shards",
                "64",
                "--lease-duration",
                "10",
                "--lease-renew-every",
                "1",
            ],
        )
        proc.env.update({"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"})
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
        for member in sorted(set(self.procs) - pods):
            await asyncio.to_thread(self.procs.pop(member).stop)
        for member, proc in self.procs.items():
            assert proc.proc.poll() is None, f"{member} exited:\n{proc.log_tail()}"

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> str:
        return "".join(f"\n--- {m} ---\n{p.log_tail()}" for m, p in self.procs.items())


async def test_scale_with_real_runtime_members(operator, services, ns, api, tmp_path):
    name, prefix = "live", f"e2e-{uuid.uuid4().hex[:8]}"
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(ns, name, prefix, deletionPolicy="Delete"),
    )
    members = Members(api, ns, name, prefix, tmp_path)
    fail = lambda: dump(ns, name, operator) + members.logs()  # noqa: E731
    try:
        job = await migrate_like_the_job(api, ns, name)
        await job_succeeded(api, ns, job)
        for replicas in (3, 5, 2):
            if replicas != 3:
                kubectl("scale", "twc", name, "-n", ns, f"--replicas={replicas}")

            async def converged(replicas: int = replicas):
                await members.sync()
                twc = await get_cluster(api, ns, name)
                sts = await api.get("StatefulSet", ns, name)
                smap = await shard_map(api, ns, name)
                if not (sts and smap):
                    return False
                if smap.in_handoff:
                    for loser in smap.handoff.losing_members():
                        assert int(loser.rsplit("-", 1)[1]) < sts["spec"]["replicas"]
                wanted = sorted(f"{name}-{i}" for i in range(replicas))
                leases = {lease["metadata"]["name"]: lease for lease in await api.list("Lease", ns)}
                acked = all(
                    int(
                        (leases.get(m, {}).get("metadata", {}).get("annotations") or {}).get(
                            "threadweaver.io/acked-epoch"
                        )
                        or 0
                    )
                    == smap.epoch
                    for m in wanted
                )
                return (
                    (twc.get("status") or {}).get("phase") == "Running"
                    and sts["spec"]["replicas"] == replicas
                    and not smap.in_handoff
                    and sorted(smap.assignments) == wanted
                    and acked
                    and max(smap.counts().values()) - min(smap.counts().values()) <= 1
                )

            await eventually(
                converged, 240, 1.0, what=f"{replicas} real members converged", on_fail=fail
            )
            # what the members report agrees with the map
            smap = await shard_map(api, ns, name)
            for member in smap.assignments:
                lease = await api.get("Lease", ns, member)
                owned = lease["metadata"]["annotations"]["threadweaver.io/owned-ranges"]
                assert owned == str(smap.assignments[member]), (
                    member,
                    owned,
                    smap.assignments[member],
                )
    finally:
        await asyncio.to_thread(members.stop)


async def _converged(api, ns, name, members: Members, expected: list[str]) -> bool:
    """The map assigns exactly `expected`, no handoff is pending, every expected member
    acknowledged the epoch and reports a running RMU for each range it owns."""
    smap = await shard_map(api, ns, name)
    if not smap or smap.in_handoff or sorted(smap.assignments) != sorted(expected):
        return False
    if any(
        m not in members.procs or smap.address_of(m) != members.procs[m].url.removeprefix("http://")
        for m in expected
    ):
        return False  # forwarding uses the addresses the members advertise
    for member in expected:
        lease = await api.get("Lease", ns, member)
        notes = ((lease or {}).get("metadata") or {}).get("annotations") or {}
        if int(notes.get("threadweaver.io/acked-epoch") or 0) != smap.epoch:
            return False
        if notes.get("threadweaver.io/owned-ranges") != str(smap.assignments[member]):
            return False
        rmus = json.loads(notes.get("threadweaver.io/rmus") or "[]")
        if not rmus or not all(r.get("running") for r in rmus):
            return False
    return True


async def test_a_killed_member_loses_its_ranges_and_rejoins(operator, services, ns, api, tmp_path):
    """kill -9 of a member whose pod stays: once its Lease has expired past the grace period the
    operator moves its ranges (and so their RMUs) to the live members, commands for those
    threads keep working, and a restarted process is rebalanced back in."""
    name, prefix = "kill", f"e2e-{uuid.uuid4().hex[:8]}"
    apply_yaml(
        secret(ns, f"{name}-aws", {"access-key-id": "e2e", "secret-access-key": "e2e"}),
        secret(ns, f"{name}-mysql", {"password": "threadweaver"}),
        cluster_manifest(ns, name, prefix, deletionPolicy="Delete"),
    )
    members = Members(api, ns, name, prefix, tmp_path)
    fail = lambda: dump(ns, name, operator) + members.logs()  # noqa: E731
    everyone = [f"{name}-{i}" for i in range(3)]
    try:
        job = await migrate_like_the_job(api, ns, name)
        await job_succeeded(api, ns, job)

        async def all_three():
            await members.sync()
            return await _converged(api, ns, name, members, everyone)

        await eventually(all_three, 240, 1.0, what="3 real members converged", on_fail=fail)

        entry = members.procs[f"{name}-0"]
        async with aiohttp.ClientSession(entry.url) as http:
            threads = {}
            for _ in range(12):
                admin = new_ulid()
                async with http.post(
                    "/v1/threads/create",
                    json={
                        "accountId": admin,
                        "title": "t",
                        "administratorIds": [admin],
                        "memberIds": [],
                        "createAt": 1,
                    },
                ) as r:
                    assert r.status == 200, await r.text()
                    threads[(await r.json())["thread_id"]] = admin

            victim = f"{name}-1"
            members.procs[victim].kill()  # the pod stays; its process is gone

            async def survivors_took_over():
                return await _converged(api, ns, name, members, [f"{name}-0", f"{name}-2"])

            await eventually(
                survivors_took_over,
                180,
                1.0,
                what="the killed member's ranges moved to the survivors",
                on_fail=fail,
            )

            for tid, admin in threads.items():  # every thread still takes commands
                async with http.post(
                    f"/v1/threads/{tid}/messages/add",
                    json={
                        "accountId": admin,
                        "createAt": 2,
                        "messages": [{"text": "after the kill", "toAccountIds": []}],
                    },
                ) as r:
                    assert r.status == 200, (tid, r.status, await r.text())

        members.procs[victim] = members._start(victim)  # the kubelet restarts the container

        async def rejoined():
            return await _converged(api, ns, name, members, everyone)

        await eventually(
            rejoined, 240, 1.0, what="the restarted member rebalanced back in", on_fail=fail
        )
    finally:
        await asyncio.to_thread(members.stop)

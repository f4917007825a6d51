"""Planning a rebuild of the read model (operator/threadweaver_operator/rebuild.py): passes of
the pure planning step, each fed with what the previous one wrote (its status, the ConfigMap it
applied, the Jobs it created with the state a test gives them) and the members' reports."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.support.operator_observations import NOW, SPEC, TABLES_READY, observation
from threadweaver.shards import (
    MemberStatus,
    ReadModelDirective,
    ReadModelReport,
    ShardMap,
)
from threadweaver_operator import builders, planning
from threadweaver_operator.read_models import published_directive, template_database
from threadweaver_operator.status import status_patch
from threadweaver_operator.steps import Apply, Create, Post, WriteStatus

MEMBERS = ["chat-0", "chat-1", "chat-2"]
SMAP = ShardMap.initial(64, MEMBERS)
OLD, NEW = "threadweaver", "tw_new"
SUCCEEDED = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {"failed": 4, "conditions": [{"type": "Failed", "status": "True", "message": "boom"}]}


def mysql(**extra) -> dict:
    return {"mysql": {"host": "db", "passwordSecret": {"name": "mysql"}, **extra}}


def lease(member: str, report: ReadModelReport | None = None) -> dict:
    renew = (NOW - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    status = MemberStatus(member, acked_epoch=SMAP.epoch, owned=SMAP.assignments[member])
    return {
        "metadata": {
            "name": member,
            "annotations": replace(status, read_model=report).to_annotations(),
        },
        "spec": {"holderIdentity": member, "leaseDurationSeconds": 15, "renewTime": renew},
    }


def running(read_model: dict | None = None, **fields):
    """A cluster serving database OLD (pods Ready, migrated), its spec now ``read_model``."""
    before = observation(spec={"readModel": mysql()})
    sts = builders.statefulset(before.spec, 3)
    sts["status"] = {"replicas": 3, "readyReplicas": 3}
    o = observation(
        spec={"readModel": read_model or mysql()},
        tables=TABLES_READY,
        statefulset=sts,
        shardmap_configmap=builders.shardmap_configmap(before.spec, SMAP),
        previous={"migratedRevision": before.spec.migration_revision(), "epoch": 1},
        leases=tuple(lease(m) for m in MEMBERS),
    )
    return replace(o, **fields)


def run(o):
    """One pass: the plan, and the observation of the next pass (what it wrote, Jobs as
    created, no state yet)."""
    p = planning.plan(o)
    (write,) = p.of(WriteStatus)
    configmaps = [s.obj for s in p.of(Apply) if s.obj["kind"] == "ConfigMap"]
    configmap = configmaps[-1] if configmaps else o.shardmap_configmap
    directive, _ = published_directive(configmap)
    warned = o.warned | {s.warning_key for s in p.of(Post) if s.warning_key}
    nxt = replace(
        o,
        previous=dict(write.status),
        shardmap_configmap=configmap,
        read_model_directive=directive,
        warned=warned,
    )
    for step in p.of(Create):
        name = step.obj["metadata"]["name"]
        field = "project_job" if "-project-" in name else "rebuild_migration_job"
        nxt = replace(nxt, **{field: dict(step.obj)})
    return p, nxt


def with_job_status(o, field: str, status: dict):
    return replace(o, **{field: {**getattr(o, field), "status": status}})


def events(p) -> list[tuple[str, str, str]]:
    out = []
    for step in p.steps:
        if isinstance(step, Post):
            out.append((step.event.type, step.event.reason, step.event.message))
        out += [(e.type, e.reason, e.message) for e in getattr(step, "events", ())]
    return out


def reasons(p) -> list[str]:
    return [r for _, r, _ in events(p)]


def rebuild_status(p) -> dict:
    (write,) = p.of(WriteStatus)
    return dict(write.status["readModel"])


def rebuilding_condition(p) -> dict:
    (write,) = p.of(WriteStatus)
    return next(c for c in write.status["conditions"] if c["type"] == "Rebuilding")


def reports(stage: str, **fields) -> tuple[dict, ...]:
    counts = SMAP.counts()
    return tuple(
        lease(
            m,
            ReadModelReport(
                OLD if stage != "switched" else NEW,
                NEW if stage in ("handover", "switched") else OLD,
                NEW if stage != "switched" else None,
                stage if stage != "switched" else None,
                counts[m],
                **fields,
            ),
        )
        for m in MEMBERS
    )


def test_the_target_database_comes_from_the_spec_and_a_rebuild_token():
    assert running().spec.target_database() == OLD
    assert running(mysql(database=NEW)).spec.target_database() == NEW
    token = running({**mysql(), "rebuild": "2026-12-03"})
    assert token.spec.target_database() == "threadweaver_2026_12_03"
    assert not token.spec_problems
    assert running({**mysql(), "rebuild": "no spaces"}).spec_problems
    too_long = observation(spec={"readModel": {**mysql(database="x" * 60), "rebuild": "abcdef"}})
    assert any("64" in problem for problem in too_long.spec_problems)


def test_a_cluster_that_never_rebuilt_publishes_no_directive_and_keeps_its_template():
    p, _ = run(running())
    assert not p.of(Create)
    configmaps = [s.obj for s in p.of(Apply) if s.obj["kind"] == "ConfigMap"]
    assert all("readmodel.json" not in c["data"] for c in configmaps)
    assert rebuild_status(p) == {"database": OLD}
    assert not any(c["type"] == "Rebuilding" for c in p.of(WriteStatus)[0].status["conditions"])


def test_a_new_database_is_migrated_by_a_job_while_the_old_one_serves():
    p, _ = run(running(mysql(database=NEW)))
    (create,) = p.of(Create)
    job = create.obj
    env = builders.env_dict(job["spec"]["template"]["spec"]["containers"][0])
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "threadweaver",
        "migrate",
    ]
    assert env["THREADWEAVER_READ_MODEL"] == f"mysql+aiomysql://threadweaver@db:3306/{NEW}"
    # the same server and Secret as the database served
    assert env["THREADWEAVER_READ_MODEL_PASSWORD_FILE"] == builders.PASSWORD_FILE
    assert ("Normal", "RebuildStarted") in [(t, r) for t, r, _ in events(p)]
    (sts,) = [s.obj for s in p.of(Apply) if s.obj["kind"] == "StatefulSet"]
    assert template_database(sts) == OLD  # the pods are not rolled
    status = rebuild_status(p)
    assert status["database"] == OLD
    assert status["rebuild"]["phase"] == "Migrating"
    assert status["rebuild"]["database"] == NEW and status["rebuild"]["previousDatabase"] == OLD
    condition = rebuilding_condition(p)
    assert (condition["status"], condition["reason"]) == ("True", "Migrating")
    assert p.of(WriteStatus)[0].status["phase"] == "Running"


def test_a_rebuild_runs_its_phases_and_switches_every_member_at_once():
    p, o = run(running(mysql(database=NEW)))
    p, o = run(o)  # the Job runs: nothing new
    assert not p.of(Create) and rebuild_status(p)["rebuild"]["phase"] == "Migrating"

    p, o = run(with_job_status(o, "rebuild_migration_job", SUCCEEDED))
    (create,) = p.of(Create)
    command = create.obj["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["threadweaver", "project"]
    assert command[command.index("--read-model") + 1].endswith(f"/{NEW}")
    assert command[command.index("--journal") + 1] == o.spec.journal_url()
    assert command[command.index("--until-lag") + 1] == "1"
    assert create.obj["metadata"]["name"].startswith("chat-project-")
    assert o.read_model_directive == ReadModelDirective(OLD, NEW, "fill")
    assert rebuild_status(p)["rebuild"]["phase"] == "Projecting"

    # progress: what the members report of the target's checkpoints
    o = replace(o, leases=reports("fill", caught_up=10, lag_seconds=42.5))
    p, o = run(o)
    progress = rebuild_status(p)["rebuild"]["progress"]
    assert progress["caughtUp"] == 30 and progress["lagSeconds"] == 42.5
    assert progress["shards"] == 64 and progress["membersReporting"] == 3

    p, o = run(with_job_status(o, "project_job", SUCCEEDED))
    assert o.read_model_directive == ReadModelDirective(OLD, NEW, "catch-up")
    assert "RebuildCatchingUp" in reasons(p)

    # one member's shadows are not within a second yet: wait
    counts = SMAP.counts()
    behind = reports("catch-up", caught_up=0)
    caught = tuple(
        lease(m, ReadModelReport(OLD, OLD, NEW, "catch-up", counts[m], counts[m], 0.2))
        for m in MEMBERS
    )
    o = replace(o, leases=(*caught[:2], behind[2]))
    p, o = run(o)
    assert o.read_model_directive.stage == "catch-up"
    assert rebuild_status(p)["rebuild"]["phase"] == "CatchingUp"

    p, o = run(replace(o, leases=caught))
    assert o.read_model_directive == ReadModelDirective(OLD, NEW, "handover")
    assert rebuild_status(p)["rebuild"]["phase"] == "HandingOver"

    # a member that has not passed the old checkpoints yet holds the switch
    handed = reports("handover", handed_over=True)
    p, o = run(replace(o, leases=(*handed[:2], reports("handover")[2])))
    assert o.read_model_directive.stage == "handover"

    p, o = run(replace(o, leases=handed))
    switch_at = NOW.timestamp() + 2.0
    assert o.read_model_directive == ReadModelDirective(NEW, previous=OLD, switch_at=switch_at)
    status = rebuild_status(p)
    assert status["database"] == NEW and status["previousDatabase"] == OLD
    assert status["rebuild"]["phase"] == "Complete" and "progress" not in status["rebuild"]
    condition = rebuilding_condition(p)
    assert (condition["status"], condition["reason"]) == ("False", "Switched")
    assert f"{OLD} is kept" in condition["message"]
    assert "RebuildSwitched" in reasons(p)
    (sts,) = [s.obj for s in p.of(Apply) if s.obj["kind"] == "StatefulSet"]
    assert template_database(sts) == OLD  # no rollout: the directive names the database

    # afterwards: steady, nothing migrated again, the old database still named
    p, o = run(replace(o, leases=reports("switched")))
    assert not p.of(Create)
    assert rebuild_status(p)["previousDatabase"] == OLD
    assert rebuild_status(p)["database"] == NEW
    assert p.of(WriteStatus)[0].status["phase"] == "Running"
    assert o.read_model_directive.serving == NEW


def test_a_rebuild_token_targets_a_database_on_the_same_server():
    p, _ = run(running({**mysql(), "rebuild": "r2"}))
    (create,) = p.of(Create)
    env = builders.env_dict(create.obj["spec"]["template"]["spec"]["containers"][0])
    assert env["THREADWEAVER_READ_MODEL"].endswith("@db:3306/threadweaver_r2")
    assert rebuild_status(p)["rebuild"]["token"] == "r2"


def _failed(field: str):
    p, o = run(running(mysql(database=NEW)))
    if field == "project_job":
        p, o = run(with_job_status(o, "rebuild_migration_job", SUCCEEDED))
    p, o = run(with_job_status(o, field, FAILED))
    return p, o


def test_a_failed_project_job_keeps_the_old_database_serving_with_a_condition_and_a_warning():
    p, o = _failed("project_job")
    assert o.read_model_directive == ReadModelDirective(OLD)  # the members drop the target
    status = rebuild_status(p)
    assert status["database"] == OLD and status["rebuild"]["phase"] == "Failed"
    condition = rebuilding_condition(p)
    assert (condition["status"], condition["reason"]) == ("False", "RebuildFailed")
    assert "boom" in condition["message"] and f"{OLD} keeps serving" in condition["message"]
    (warning,) = [e for e in events(p) if e[1] == "RebuildFailed"]
    assert warning[0] == "Warning"
    assert p.of(WriteStatus)[0].status["phase"] == "Running"
    p, o = run(o)  # posted once
    assert "RebuildFailed" not in reasons(p)
    assert rebuild_status(p)["rebuild"]["phase"] == "Failed"


def test_a_failed_migration_job_fails_the_rebuild_before_any_directive():
    p, o = _failed("rebuild_migration_job")
    assert o.read_model_directive is None
    assert rebuild_status(p)["rebuild"]["phase"] == "Failed"
    assert not p.of(Create)


def test_setting_the_spec_back_cancels_the_rebuild():
    p, o = run(running(mysql(database=NEW)))
    p, o = run(with_job_status(o, "rebuild_migration_job", SUCCEEDED))
    assert o.read_model_directive.target == NEW
    back = observation(spec={**SPEC, "readModel": mysql()})
    p, o = run(replace(o, raw_spec=back.raw_spec, spec=back.spec))
    assert o.read_model_directive == ReadModelDirective(OLD)
    assert "RebuildCancelled" in reasons(p)
    assert rebuild_status(p)["rebuild"]["phase"] == "Cancelled"


def test_the_status_patch_removes_what_the_rebuild_no_longer_reports():
    old = {"readModel": {"database": OLD, "rebuild": {"phase": "CatchingUp", "progress": {}}}}
    new = {"readModel": {"database": NEW, "rebuild": {"phase": "Complete"}}, "conditions": []}
    patch = status_patch({**new, "members": {}}, {**old, "members": {}, "conditions": []})
    assert patch["readModel"] == {
        "database": NEW,
        "rebuild": {"phase": "Complete", "progress": None},
    }


def test_the_project_jobs_pods_reach_only_dns_dynamodb_and_mysql() -> None:
    from threadweaver_operator.network_policies import rebuild_policy

    target = observation().spec.with_database("threadweaver_v2")
    policy = rebuild_policy(target)
    assert policy["metadata"]["name"] == f"{target.name}-rebuild"
    pod_labels = builders.project_job(target)["spec"]["template"]["metadata"]["labels"]
    assert set(policy["spec"]["podSelector"]["matchLabels"].items()) <= set(pod_labels.items())
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert [r["ports"] for r in policy["spec"]["egress"]] == [
        [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        [{"protocol": "TCP", "port": 8000}],  # the spec's DynamoDB endpoint http://ddb:8000
        [{"protocol": "TCP", "port": 3306}],  # its MySQL host db, the default port
    ]

"""spec.tracing: parsed with the CRD's defaults, validated, and passed to the runtime pods as
THREADWEAVER_OTEL_ENDPOINT / THREADWEAVER_OTEL_SAMPLE_RATIO (none of them without an
endpoint: tracing off)."""

from __future__ import annotations

import pytest
from test_operator_packaging import validator

from threadweaver_operator import builders
from threadweaver_operator.builders import env_dict
from threadweaver_operator.spec import ClusterSpec, SpecError, TracingSpec

BASE = {"image": "img:1", "readModel": {"mysql": {"host": "db"}}}
ENDPOINT = "http://otel-collector.observability:4318"


def parse(tracing=None) -> ClusterSpec:
    raw = dict(BASE)
    if tracing is not None:
        raw["tracing"] = tracing
    return ClusterSpec.from_resource("chat", "team", raw)


def runtime_env(spec: ClusterSpec) -> dict[str, str]:
    (container,) = builders.statefulset(spec, 1)["spec"]["template"]["spec"]["containers"]
    return env_dict(container)


def test_absent_is_off_and_sets_no_variable():
    for s in (parse(), parse({})):
        assert s.tracing == TracingSpec() and s.problems() == []
        assert not {"THREADWEAVER_OTEL_ENDPOINT", "THREADWEAVER_OTEL_SAMPLE_RATIO"} & set(
            runtime_env(s)
        )


def test_an_endpoint_reaches_the_runtime_pods_with_the_sample_ratio():
    s = parse({"endpoint": ENDPOINT, "sampleRatio": 0.25})
    assert s.problems() == []
    env = runtime_env(s)
    assert env["THREADWEAVER_OTEL_ENDPOINT"] == ENDPOINT
    assert float(env["THREADWEAVER_OTEL_SAMPLE_RATIO"]) == 0.25
    assert float(runtime_env(parse({"endpoint": ENDPOINT}))["THREADWEAVER_OTEL_SAMPLE_RATIO"]) == 1


@pytest.mark.parametrize(
    "tracing,problem",
    [
        ({"endpoint": "otel:4318"}, "spec.tracing.endpoint"),
        ({"endpoint": ENDPOINT, "sampleRatio": 1.5}, "spec.tracing.sampleRatio"),
    ],
)
def test_problems_name_the_field(tracing, problem):
    assert [p for p in parse(tracing).problems() if p.startswith(problem)]


def test_a_wrong_type_is_a_spec_error():
    with pytest.raises(SpecError, match=r"spec\.tracing\.sampleRatio"):
        parse({"endpoint": ENDPOINT, "sampleRatio": "all"})
    with pytest.raises(SpecError, match=r"spec\.tracing\.endpoint"):
        parse({"endpoint": 4318})


def test_the_crd_accepts_tracing_and_bounds_the_ratio():
    v = validator()
    doc = {
        "apiVersion": "threadweaver.io/v1alpha1",
        "kind": "ThreadWeaverCluster",
        "metadata": {"name": "chat"},
        "spec": {**BASE, "tracing": {"endpoint": ENDPOINT, "sampleRatio": 0.5}},
    }
    v.validate(doc)
    doc["spec"]["tracing"]["sampleRatio"] = 2
    assert not v.is_valid(doc)

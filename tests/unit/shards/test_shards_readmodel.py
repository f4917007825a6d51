"""The read-model directive and report (threadweaver.shards.readmodel): what each stage means for
a member, round trips through JSON and the Lease, clear errors."""

from __future__ import annotations

import pytest

from threadweaver.shards import (
    ANNOTATION_READ_MODEL,
    MembershipError,
    MemberStatus,
    RangeSet,
    ReadModelDirective,
    ReadModelError,
    ReadModelReport,
    database_problem,
)


def test_each_stage_names_where_the_rmus_and_the_shadows_run() -> None:
    steady = ReadModelDirective("a")
    assert (steady.rmu_database, steady.shadow_database) == ("a", None)
    fill = ReadModelDirective("a", "b", "fill")
    assert (fill.rmu_database, fill.shadow_database) == ("a", None)
    catch_up = ReadModelDirective("a", "b", "catch-up")
    assert (catch_up.rmu_database, catch_up.shadow_database) == ("a", "b")
    handover = ReadModelDirective("a", "b", "handover")
    assert (handover.rmu_database, handover.shadow_database) == ("b", None)
    switched = ReadModelDirective("b", previous="a", switch_at=1700000000.5)
    assert (switched.rmu_database, switched.serving) == ("b", "b")


@pytest.mark.parametrize(
    "directive",
    [
        ReadModelDirective("a"),
        ReadModelDirective("a", "b", "catch-up", previous="z", switch_at=12.5),
        ReadModelDirective("b", previous="a", switch_at=1700000000),
    ],
)
def test_a_directive_round_trips_through_its_json(directive) -> None:
    assert ReadModelDirective.from_json(directive.dumps()) == directive
    assert directive.dumps() == ReadModelDirective.from_json(directive.dumps()).dumps()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "JSON object"),
        ("{", "not valid JSON"),
        ('{"target": "b"}', "missing 'serving'"),
        ('{"serving": "a", "extra": 1}', "unknown fields"),
        ('{"serving": "a", "target": "b"}', "both or neither"),
        ('{"serving": "a", "target": "b", "stage": "later"}', "stage: one of"),
        ('{"serving": "a", "target": "a", "stage": "fill"}', "served already"),
        ('{"serving": "a b"}', "serving: database name"),
        ('{"serving": "a", "switchAt": "soon"}', "switchAt"),
    ],
)
def test_a_malformed_directive_is_refused_naming_the_field(text, message) -> None:
    with pytest.raises(ReadModelError, match=message):
        ReadModelDirective.from_json(text)


def test_database_names_fit_a_url_and_a_statement() -> None:
    assert database_problem("threadweaver_2026_12_03") is None
    for bad in ("", "a-b", "a;drop", "x" * 65, None, 3):
        assert database_problem(bad)


def test_a_report_round_trips_through_the_lease() -> None:
    report = ReadModelReport("a", "b", "b", "handover", 64, 64, None, True)
    status = MemberStatus("chat-0", 3, RangeSet.parse("0-64"), read_model=report)
    annotations = status.to_annotations()
    assert MemberStatus.from_annotations("chat-0", annotations) == status
    plain = MemberStatus("chat-0").to_annotations()
    assert plain[ANNOTATION_READ_MODEL] == ""  # always written: a merge patch clears it
    assert MemberStatus.from_annotations("chat-0", plain).read_model is None
    steady = ReadModelReport("a", "a")
    assert ReadModelReport.from_json(steady.dumps()) == steady
    assert "target" not in steady.to_json()


def test_a_malformed_report_names_the_member_and_the_annotation() -> None:
    with pytest.raises(MembershipError, match=r"chat-1.*read-model"):
        MemberStatus.from_annotations("chat-1", {ANNOTATION_READ_MODEL: '{"queries": 1}'})
    with pytest.raises(ReadModelError, match="caughtUp"):
        ReadModelReport.from_json({"queries": "a", "rmus": "a", "caughtUp": -1})

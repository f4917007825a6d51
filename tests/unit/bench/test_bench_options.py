"""The benchmark's own options and bookkeeping (no benchmark runs here): profile overrides
(`python -m bench --set`), the parts of workload 6 a run keeps from the previous results, the
cost-of-metrics pairing of workload 1, and the report's rows for them."""

from __future__ import annotations

import pytest

from bench.__main__ import _carry_parts
from bench.profiles import FULL, override
from bench.report_dynamodb import lag, target_rows
from bench.report_sections import http
from bench.w1_http import NO_METRICS, _metrics_cost


def test_override_parses_each_field_as_its_type():
    p = override(FULL, ["prod_runs=2", "prod_duration=5", "prod_parts=commands, lag"])
    assert p.prod_runs == 2 and p.prod_duration == 5.0
    assert p.prod_parts == ("commands", "lag")
    assert override(FULL, ["prod_shards=1024,64"]).prod_shards == (1024, 64)
    assert override(FULL, []) == FULL


@pytest.mark.parametrize("text", ["nosuchfield=1", "prod_runs", "name=quick"])
def test_override_refuses_what_is_not_a_profile_field(text):
    with pytest.raises(ValueError):
        override(FULL, [text])


def test_parts_not_run_keep_their_previous_results_and_meta():
    previous = {
        "parts": ["commands", "lag", "handoff", "clients"],
        "handoff": {"moves": [1, 2]},
        "clients": {"variants": {}, "meta": {"git_commit": "old1"}},
        "commands": {"summary": {"old": 1}},
        "git_commit": "old0",
        "measured_at": "then",
    }
    result = {
        "parts": ["commands", "lag"],
        "all_parts": ["commands", "lag", "handoff", "clients"],
        "commands": {"summary": {"new": 1}},
        "lag": {"p99_ms": 80},
        "git_commit": "new",
        "measured_at": "now",
    }
    _carry_parts(result, previous)
    assert result["commands"]["summary"] == {"new": 1}  # measured now: not replaced
    assert result["commands"]["meta"]["git_commit"] == "new"
    assert result["lag"]["meta"]["measured_at"] == "now"
    assert result["handoff"] == {
        "moves": [1, 2],
        "meta": {"git_commit": "old0", "measured_at": "then"},
    }
    assert result["clients"]["meta"] == {"git_commit": "old1"}  # its own, kept


def test_a_workload_without_parts_is_left_alone():
    result = {"summary": {}}
    _carry_parts(result, {"summary": {"old": 1}, "x": {}})
    assert result == {"summary": {}}


def _wrk(rps: float, cpu: float, p50: float = 1000.0, p99: float = 5000.0) -> dict:
    return {"rps": rps, "server_cpu_pct": cpu, "p50_us": p50, "p99_us": p99}


def test_the_cost_of_metrics_is_the_median_of_the_round_by_round_ratios():
    raw = {
        "full.create": [_wrk(900, 90), _wrk(1000, 100), _wrk(500, 50)],
        f"{NO_METRICS}.create": [_wrk(1000, 90), _wrk(1000, 100), _wrk(2000, 100)],
    }
    (cost,) = _metrics_cost(raw)
    assert cost["workload"] == "create" and cost["rounds"] == 3
    # per CPU-second: 1000/1111, 1000/1000, 1000/2000 -> median 0.9
    assert cost["rps_per_cpu_s_ratio"] == pytest.approx(0.9)
    assert cost["rps_per_cpu_s_ratios"] == [0.9, 1.0, 0.5]
    assert cost["rps_ratio"] == pytest.approx(0.9)
    assert _metrics_cost({"full.create": [_wrk(1, 1)]}) == []  # nothing to compare


def test_the_report_shows_the_cost_of_metrics_and_the_production_lag():
    cost = _metrics_cost({"full.hot": [_wrk(950, 100)], f"{NO_METRICS}.hot": [_wrk(1000, 100)]})
    row = {**_wrk(950, 100), "p999_us": 9000.0, "wrk_cpu_pct": 5, "non2xx": 0}
    text = http({"summary": {"full.hot": row}, "metrics_cost": cost, "runs": 1})
    assert "| hot | 950 | 1,000 | 0.95× |" in text
    w6 = {"lag": {"p99_ms": 84.0, "p50_ms": 22.5, "shards": 1024, "target_p99_ms": 250}}
    assert "--shards 1024" in lag(w6)
    (target,) = target_rows(w6)
    assert "84 ms (p50 22 ms)" in target and "**met**" in target
    slow = {"lag": {**w6["lag"], "p99_ms": 300.0}}
    assert "**missed**" in target_rows(slow)[0]

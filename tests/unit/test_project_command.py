"""`threadweaver project`'s pure parts: its flags and shard selection, the judgement of a target
database, the progress bar and JSON lines."""

import io
import json

import pytest

from threadweaver.adapters.readmodel.target import TargetState, known_revisions
from threadweaver.application.projection_build import BuildProgress
from threadweaver.cli import build_parser
from threadweaver.progress_report import Reporter, bar_line, progress_fields, summary_text
from threadweaver.project_command import shard_selection
from threadweaver.projection_target import schema_problems

OURS = frozenset(
    {
        "alembic_version",
        "thread",
        "thread_administrator_ids",
        "thread_member_ids",
        "thread_message",
        "projection_offset",
    }
)


def test_shards_are_a_count_or_ranges_checked_against_the_count():
    assert shard_selection("", 8) == (8, list(range(8)))
    assert shard_selection("4", 1024) == (4, [0, 1, 2, 3])
    assert shard_selection("2-4,6-7", 8) == (8, [2, 3, 6])
    with pytest.raises(ValueError, match="beyond the 8 shards"):
        shard_selection("0-9", 8)
    with pytest.raises(ValueError):
        shard_selection("nonsense", 8)
    with pytest.raises(ValueError, match="between 1 and 65536"):
        shard_selection("0", 8)


def test_the_flags_and_their_environment(monkeypatch):
    monkeypatch.setenv("THREADWEAVER_SHARDS", "64")
    monkeypatch.setenv("THREADWEAVER_UNTIL_LAG", "2.5")
    args = build_parser().parse_args(["project", "--journal", "sqlite:///j.db"])
    assert (args.shard_set, args.shard_count, args.until_lag) == ("64", 64, 2.5)
    args = build_parser().parse_args(["project", "--shards", "0-32"])
    assert shard_selection(args.shard_set, args.shard_count) == (64, list(range(32)))
    assert args.progress == "auto" and args.batch_size == 2000
    # the storage count is not a flag of its own here: --shards is the selection
    assert not hasattr(args, "shards")


def test_the_command_exits_2_on_bad_flags(capsys):
    from threadweaver.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["project", "--shards", "0-99", "--shard-count", "8"])
    assert exc.value.code == 2
    assert "beyond the 8 shards" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["project", "--batch-size", "0"])
    assert exc.value.code == 2


def state(tables=OURS, revision="head", checkpoints=None, threads=()):
    revisions = known_revisions()
    if revision == "head":
        revision = sorted(revisions)[0]
    return TargetState(frozenset(tables), revision, revisions, checkpoints, (), threads)


def test_an_empty_database_or_one_of_ours_is_accepted():
    assert schema_problems(state(tables=(), revision=None), 1024) == []
    assert schema_problems(state(checkpoints=(1024, 0, 1023)), 1024) == []
    assert schema_problems(state(tables=OURS | {"something_else"}), 1024) == []


def test_a_foreign_database_is_refused_with_the_reason():
    (problem,) = schema_problems(state(tables={"users", "orders"}, revision=None), 1024)
    assert "no thread-weaver schema revision" in problem and "orders, users" in problem
    (problem,) = schema_problems(state(revision="ffffffffffff"), 1024)
    assert "'ffffffffffff' is not one of this thread-weaver's" in problem
    (problem,) = schema_problems(state(checkpoints=(2048, 0, 2047)), 1024)
    assert "shards up to 2047" in problem and "more than 1024 shards" in problem


def progress(**kw):
    base = {"shards": 4, "started_at": 100.0, "pass_started_at": 100.0, "passes": 1}
    return BuildProgress(**{**base, **kw})


def test_progress_fields_and_the_bar():
    p = progress(applied=1500, skipped=500, shards_done=2)
    fields = progress_fields(p, 110.0)
    assert fields["applied"] == 1500 and fields["events_per_second"] == 200.0
    assert fields["percent"] == 50.0 and fields["eta_seconds"] == 10.0
    line = bar_line(p, 110.0, width=10)
    assert line.startswith("[#####.....]  50.0% 1,500 events 200/s ETA 00:10 pass 1")
    p.done, p.lag_seconds, p.resumed = True, 0.25, True
    text = summary_text(p, 110.0)
    assert "1,500 events applied" in text and "at most 0.25 s" in text and "resumed" in text


def test_json_lines_off_a_terminal_and_a_bar_on_one():
    out = io.StringIO()
    reporter = Reporter(out, tty=False)
    p = progress(applied=10)
    reporter.progress(p, 101.0)
    p.done = True
    reporter.summary(p, 102.0)
    reporter.error("boom", 3)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["progress", "summary", "error"]
    assert lines[0]["applied"] == 10 and "eta_seconds" in lines[0]
    assert lines[2] == {"event": "error", "error": "boom", "exit_code": 3}

    tty = io.StringIO()
    Reporter(tty, tty=True).progress(p, 101.0)
    assert tty.getvalue().startswith("\r[") and "\n" not in tty.getvalue()

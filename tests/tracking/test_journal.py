"""The append-only journal: record format, torn lines, and orphan detection by flock."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gitml.tracking import journal, metrics
from testing.procs import READY, finish, read_until, spawn

RUN_ID = "0123456789abcdef0123456789abcdef"

WRITER = f"""
import sys, time
from pathlib import Path
from gitml.tracking import journal, metrics

segment = journal.Segment.create(Path(sys.argv[1]), {RUN_ID!r})
segment.write(journal.metric_record("loss", metrics.line(1, 2, 0.5)))
segment.write(journal.param_record("lr", "0.1"))
segment.write(b"M\\tloss\\t2\\t3")  # torn: the process dies in the middle of a record
print(segment.path, flush=True)
print({READY!r}, flush=True)
time.sleep(120)
"""


def test_records_round_trip() -> None:
    data = b"".join(
        [
            journal.metric_record("loss", metrics.line(0, 10, 0.5)),
            journal.metric_record("train/acc", metrics.line(1, 11, math.nan)),
            journal.metric_record("loss", metrics.line(1, 12, -math.inf)),
            journal.param_record("lr", "0.01"),
            journal.tag_record("team", "growth"),
            journal.create_record(RUN_ID, {"id": RUN_ID, "name": "r"}, ["a" * 40]),
        ]
    )
    entries = journal.parse(data)
    assert entries.metrics == {
        "loss": [b"0\t10\t0.5\n", b"1\t12\t-inf\n"],
        "train/acc": [b"1\t11\tnan\n"],
    }
    assert entries.params == {"lr": "0.01"}
    assert entries.tags == {"team": "growth"}
    assert entries.create == {"run": {"id": RUN_ID, "name": "r"}, "parents": ["a" * 40]}


@pytest.mark.parametrize(
    "value",
    [
        "tab\there",
        "new\nline",
        "both\t\n\r\n",
        "\n",
        "",
        'quotes " and \\ backslash',
        "naïve ✓ \u2028 separator",
        "ends with tab\t",
        "x" * 6000,
    ],
)
def test_param_and_tag_values_with_tabs_and_newlines_round_trip(value: str) -> None:
    data = journal.param_record("p", value) + journal.tag_record("t", value)
    assert data.count(b"\n") == 2  # each record is still one line
    entries = journal.parse(data)
    assert entries.params == {"p": value}
    assert entries.tags == {"t": value}


def test_a_later_value_of_a_key_wins() -> None:
    data = journal.tag_record("t", "first") + journal.tag_record("t", "second")
    assert journal.parse(data).tags == {"t": "second"}


@pytest.mark.parametrize(
    "torn",
    [b"M", b"M\tloss", b"M\tloss\t3\t17\t0.", b'P\tlr\t"0.0', b'T\tteam\t"gro', b"R\tabc\t{"],
)
def test_parse_drops_a_torn_last_line(torn: bytes) -> None:
    whole = journal.metric_record("loss", metrics.line(1, 2, 0.5)) + journal.param_record("a", "b")
    entries = journal.parse(whole + torn)
    assert entries.metrics == {"loss": [b"1\t2\t0.5\n"]}
    assert entries.params == {"a": "b"}
    assert entries.tags == {} and entries.create is None


def test_parse_of_nothing_is_empty() -> None:
    assert not journal.parse(b"")
    assert not journal.parse(b"M\tloss\t1")  # only a torn line


def test_entries_extend_and_truth() -> None:
    one = journal.Entries(metrics={"a": [b"1\n"]}, params={"p": "1"})
    two = journal.Entries(metrics={"a": [b"2\n"], "b": [b"3\n"]}, tags={"t": "x"})
    assert not journal.Entries()
    assert journal.Entries(tags={"t": ""})
    one.extend(two)
    assert one.metrics == {"a": [b"1\n", b"2\n"], "b": [b"3\n"]}
    assert (one.params, one.tags) == ({"p": "1"}, {"t": "x"})


def test_a_segment_appends_and_discard_removes_it(tmp_path: Path) -> None:
    root = tmp_path / "journal"  # created on first use
    segment = journal.Segment.create(root, RUN_ID)
    segment.write(journal.param_record("a", "1"))
    segment.write(journal.param_record("b", "2"))
    assert segment.path.parent == root
    assert segment.path.name.startswith(f"{RUN_ID}.")
    assert journal.parse(segment.path.read_bytes()).params == {"a": "1", "b": "2"}
    assert list(journal.orphans(root)) == []  # we hold its lock
    segment.discard()
    assert not segment.path.exists()
    assert list(journal.orphans(root)) == []


def test_orphans_of_a_missing_folder() -> None:
    assert list(journal.orphans(Path("/nonexistent/gitml/journal"))) == []


def test_orphans_skips_a_live_writer_and_finds_it_after_kill_9(repo: Path) -> None:
    root = repo / ".git" / "gitml" / "journal"
    child = spawn(WRITER, repo, str(root))
    try:
        lines = read_until(child)
        segment = Path(lines[0])
        assert segment.exists()

        assert list(journal.orphans(root)) == []  # its writer still holds the flock
        assert segment.exists()

        child.kill()  # SIGKILL: no handler, no cleanup
        code, _, _ = finish(child)
        assert code == -9
    finally:
        if child.poll() is None:
            child.kill()
            finish(child)

    [orphan] = journal.orphans(root)
    try:
        assert orphan.run_id == RUN_ID
        assert orphan.path == segment
        assert orphan.name == segment.stem
        entries = orphan.read()
        assert entries.metrics == {"loss": [b"1\t2\t0.5\n"]}  # the torn record is dropped
        assert entries.params == {"lr": "0.1"}
        # While we hold it, another recovery (even in this process) skips it.
        assert list(journal.orphans(root)) == []
    finally:
        orphan.release()
    assert not segment.exists()
    assert list(journal.orphans(root)) == []

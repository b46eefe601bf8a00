"""The append-only journal: record format, torn lines, and orphan detection by flock."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gitml.tracking import journal, metrics
from testing.procs import READY, finish, read_until, spawn

RUN_ID = "0123456789abcdef0123456789abcdef"
RUN = {
    "id": RUN_ID,
    "experiment_id": "0",
    "name": "r",
    "status": "RUNNING",
    "start_time": 1,
    "user": "u",
}

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
            journal.create_record(RUN_ID, RUN, ["a" * 40]),
        ]
    )
    entries, skipped = journal.parse(data)
    assert skipped == []
    assert entries.metrics == {
        "loss": [b"0\t10\t0.5\n", b"1\t12\t-inf\n"],
        "train/acc": [b"1\t11\tnan\n"],
    }
    assert entries.params == {"lr": "0.01"}
    assert entries.tags == {"team": "growth"}
    assert entries.create == {"run": RUN, "parents": ["a" * 40]}


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
    entries, skipped = journal.parse(data)
    assert skipped == []
    assert entries.params == {"p": value}
    assert entries.tags == {"t": value}


def test_a_later_value_of_a_key_wins() -> None:
    data = journal.tag_record("t", "first") + journal.tag_record("t", "second")
    assert journal.parse(data)[0].tags == {"t": "second"}


@pytest.mark.parametrize(
    "torn",
    [b"M", b"M\tloss", b"M\tloss\t3\t17\t0.", b'P\tlr\t"0.0', b'T\tteam\t"gro', b"R\tabc\t{"],
)
def test_parse_drops_a_torn_last_line(torn: bytes) -> None:
    whole = journal.metric_record("loss", metrics.line(1, 2, 0.5)) + journal.param_record("a", "b")
    entries, skipped = journal.parse(whole + torn)
    assert entries.metrics == {"loss": [b"1\t2\t0.5\n"]}
    assert entries.params == {"a": "b"}
    assert entries.tags == {} and entries.create is None
    assert skipped == [f"line 3 skipped, its writer died while writing it: {torn!r}"]


def test_parse_of_nothing_is_empty() -> None:
    assert journal.parse(b"") == (journal.Entries(), [])
    entries, skipped = journal.parse(b"M\tloss\t1")  # only a torn line
    assert not entries and len(skipped) == 1


GOOD = [
    journal.metric_record("loss", metrics.line(0, 10, 0.5)),
    journal.param_record("lr", "0.1"),
    journal.tag_record("team", "growth"),
    journal.metric_record("loss", metrics.line(1, 11, 0.25)),
]


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"\x00\x00\x00\x00", "not enough values to unpack"),
        (b"M\tloss\tone\t2\t0.5", "invalid literal for int()"),
        (b"M\tloss\t1\t2", "not enough values to unpack"),
        (b"M\tloss\t1\t2\t0.5\t7", "too many values to unpack"),
        (b"M\tloss\t1\t2\tlow", "could not convert string to float"),
        (b"M\t../x\t1\t2\t0.5", "invalid metric key '../x'"),
        (b"P\tlr\t0.1", "a value must be a JSON string, got float"),
        (b'T\tteam\t"unterminated', "Unterminated string"),
        (b'T\t\xff\xfe\t"x"', "can't decode byte 0xff"),
        (b"X\tkey\tvalue", "unknown record kind b'X'"),
        (b"R\t" + RUN_ID.encode() + b'\t{"run": {}, "parents": []}', "validation error"),
        (b"R\t" + RUN_ID.encode() + b"\t[]", "'run' and 'parents'"),
    ],
)
def test_a_bad_line_is_skipped_and_reported_and_the_rest_kept(garbage: bytes, why: str) -> None:
    data = b"".join(GOOD[:2]) + garbage + b"\n" + b"".join(GOOD[2:])
    entries, skipped = journal.parse(data)
    assert entries.metrics == {"loss": [b"0\t10\t0.5\n", b"1\t11\t0.25\n"]}
    assert (entries.params, entries.tags) == ({"lr": "0.1"}, {"team": "growth"})
    [report] = skipped
    assert report.startswith("line 3 skipped, it cannot be read (")
    assert why in report
    assert report.endswith(f": {garbage[:80]!r}")


def test_a_metric_line_is_written_back_in_its_canonical_form() -> None:
    entries, skipped = journal.parse(b"M\tloss\t007\t10\t5e-1\n")
    assert skipped == []
    assert entries.metrics == {"loss": [b"7\t10\t0.5\n"]}


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
    assert journal.parse(segment.path.read_bytes())[0].params == {"a": "1", "b": "2"}
    assert list(journal.orphans(root)) == []  # we hold its lock
    segment.discard()
    assert not segment.path.exists()
    assert list(journal.orphans(root)) == []


def test_journaled_creates_are_found_while_their_writer_holds_them(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    created = journal.Segment.create(root, RUN_ID)
    created.write(journal.create_record(RUN_ID, RUN, ["a" * 40]))
    created.write(journal.param_record("lr", "0.1"))
    other_id = "b" * 32
    logging_only = journal.Segment.create(root, other_id)  # a run committed before
    logging_only.write(journal.param_record("lr", "0.2"))
    torn_id = "c" * 32
    (root / f"{torn_id}.1-x.log").write_bytes(journal.create_record(torn_id, RUN, [])[:-9])
    expected = (RUN_ID, {"run": RUN, "parents": ["a" * 40]})
    assert list(journal.journaled_creates(root)) == [expected]
    assert list(journal.journaled_creates(root, RUN_ID)) == [expected]
    assert list(journal.journaled_creates(root, other_id)) == []
    # Not a run id: nothing, and no pattern reaches the glob.
    assert list(journal.journaled_creates(root, "*")) == []
    assert list(journal.journaled_creates(root, "../" + RUN_ID)) == []
    created.discard()  # committed: gone
    assert list(journal.journaled_creates(root)) == []
    logging_only.discard()


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
        entries, skipped = orphan.read()
        assert entries.metrics == {"loss": [b"1\t2\t0.5\n"]}  # the torn record is dropped
        assert skipped == ["line 3 skipped, its writer died while writing it: b'M\\tloss\\t2\\t3'"]
        assert entries.params == {"lr": "0.1"}
        # While we hold it, another recovery (even in this process) skips it.
        assert list(journal.orphans(root)) == []
    finally:
        orphan.release()
    assert not segment.exists()
    assert list(journal.orphans(root)) == []

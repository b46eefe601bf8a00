"""Metric history in fixed-size chunks, committed through a real Store."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from gitml.git.store import Change, Snapshot, Store
from gitml.tracking import metrics
from gitml.tracking.entities import Metric
from testing.git import FixedClock, git

REF = "refs/gitml/runs/0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(repo: Path) -> Store:
    return Store(repo, clock=FixedClock(), identity="Bot <bot@example.com>")


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "CHUNK_POINTS", 4)


def points(start: int, count: int) -> list[bytes]:
    return [metrics.line(step, 1000 + step, step / 10) for step in range(start, start + count)]


def log(store: Store, key: str, lines: list[bytes]) -> tuple[str, dict[str, bytes]]:
    """Commit ``lines`` after the points already on the ref; returns the tip and the files."""
    written: dict[str, bytes] = {}

    def edit(snap: Snapshot | None) -> Change:
        files = metrics.append(snap, key, lines)
        written.clear()
        written.update(files)
        return Change(dict(files))

    tip = store.update(REF, edit, f"log {len(lines)} points")
    assert tip is not None
    return tip, written


def tree(repo: Path, tip: str) -> dict[str, str]:
    """Path -> blob sha of every file in ``tip``."""
    out = {}
    for row in git(repo, "ls-tree", "-r", tip).splitlines():
        meta, path = row.split("\t")
        out[path] = meta.split()[2]
    return out


def line_count(repo: Path, tip: str, path: str) -> int:
    return git(repo, "show", f"{tip}:{path}").count("\n")


def test_line_format() -> None:
    assert metrics.line(3, 17, 0.5) == b"3\t17\t0.5\n"
    assert metrics.line(0, 0, math.nan) == b"0\t0\tnan\n"
    assert metrics.line(0, 0, -math.inf) == b"0\t0\t-inf\n"
    assert metrics.line(1, 2, 1 / 3) == b"1\t2\t0.3333333333333333\n"


def test_chunk_paths_are_zero_padded() -> None:
    assert metrics.chunk_path("loss", 0) == "metrics/0000/loss.000000.tsv"
    assert metrics.chunk_path("loss", 999) == "metrics/0009/loss.000999.tsv"
    assert metrics.chunk_path("a/b", 1234) == "metrics/0012/a%2Fb.001234.tsv"
    assert metrics.chunk_path("loss", 1_000_000) == "metrics/10000/loss.1000000.tsv"


@pytest.mark.usefixtures("small_chunks")
def test_appending_across_chunk_boundaries(repo: Path, store: Store) -> None:
    tip, written = log(store, "loss", points(0, 10))
    assert sorted(written) == [
        "metrics/0000/loss.000000.tsv",
        "metrics/0000/loss.000001.tsv",
        "metrics/0000/loss.000002.tsv",
    ]
    assert [line_count(repo, tip, p) for p in sorted(written)] == [4, 4, 2]
    assert (
        git(repo, "show", f"{tip}:metrics/0000/loss.000001.tsv").splitlines()[0] == "4\t1004\t0.4"
    )
    steps = [m.step for m in metrics.history(store.snapshot(tip), "loss")]
    assert steps == list(range(10))


@pytest.mark.usefixtures("small_chunks")
def test_a_second_append_rewrites_only_the_last_partial_chunk(repo: Path, store: Store) -> None:
    first, _ = log(store, "loss", points(0, 10))
    before = tree(repo, first)

    second, written = log(store, "loss", points(10, 3))

    # Chunk 2 fills up, chunk 3 starts.
    assert sorted(written) == ["metrics/0000/loss.000002.tsv", "metrics/0000/loss.000003.tsv"]
    after = tree(repo, second)
    assert after["metrics/0000/loss.000000.tsv"] == before["metrics/0000/loss.000000.tsv"]
    assert after["metrics/0000/loss.000001.tsv"] == before["metrics/0000/loss.000001.tsv"]
    assert after["metrics/0000/loss.000002.tsv"] != before["metrics/0000/loss.000002.tsv"]
    changed = git(repo, "diff-tree", "-r", "--name-only", first, second).split()
    assert changed == ["metrics/0000/loss.000002.tsv", "metrics/0000/loss.000003.tsv"]
    assert line_count(repo, second, "metrics/0000/loss.000002.tsv") == 4
    assert line_count(repo, second, "metrics/0000/loss.000003.tsv") == 1
    snap = store.snapshot(second)
    assert [m.step for m in metrics.history(snap, "loss")] == list(range(13))


@pytest.mark.usefixtures("small_chunks")
def test_a_full_last_chunk_is_left_alone(repo: Path, store: Store) -> None:
    first, _ = log(store, "loss", points(0, 4))
    second, written = log(store, "loss", points(4, 1))
    assert list(written) == ["metrics/0000/loss.000001.tsv"]
    assert git(repo, "diff-tree", "-r", "--name-only", first, second).split() == list(written)


def test_default_chunks_hold_a_thousand_points(repo: Path, store: Store) -> None:
    first, written = log(store, "loss", points(0, 1500))
    assert {p: v.count(b"\n") for p, v in written.items()} == {
        "metrics/0000/loss.000000.tsv": 1000,
        "metrics/0000/loss.000001.tsv": 500,
    }
    second, written = log(store, "loss", points(1500, 10))
    assert list(written) == ["metrics/0000/loss.000001.tsv"]
    assert written["metrics/0000/loss.000001.tsv"].count(b"\n") == 510
    assert (
        tree(repo, second)["metrics/0000/loss.000000.tsv"]
        == tree(repo, first)["metrics/0000/loss.000000.tsv"]
    )
    history = list(metrics.history(store.snapshot(second), "loss"))
    assert [m.step for m in history] == list(range(1510))


def test_one_point_at_a_time_writes_one_small_file_per_commit(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "CHUNK_POINTS", 2)
    tips = []
    for step in range(9):
        tip, written = log(store, "acc", points(step, 1))
        assert len(written) == 1  # whatever came before
        assert next(iter(written)) == metrics.chunk_path("acc", step // 2)
        tips.append(tip)
    assert sorted(tree(repo, tips[-1])) == [metrics.chunk_path("acc", i) for i in range(5)]
    history = list(metrics.history(store.snapshot(tips[-1]), "acc"))
    assert history == [Metric("acc", step / 10, 1000 + step, step) for step in range(9)]


def test_chunks_are_ordered_by_number_past_the_padding(repo: Path, store: Store) -> None:
    # "1000000.tsv" sorts before "999999.tsv" by name; history goes by number.
    tip = store.update(
        REF,
        lambda snap: Change(
            {
                metrics.chunk_path("m", 999_999): b"".join(points(0, metrics.CHUNK_POINTS)),
                metrics.chunk_path("m", 1_000_000): metrics.line(7, 7, 7.0),
            }
        ),
        "seed",
    )
    assert tip is not None
    steps = [m.step for m in metrics.history(store.snapshot(tip), "m")]
    assert steps == [*range(metrics.CHUNK_POINTS), 7]


def test_append_finds_the_last_of_many_chunks(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "CHUNK_POINTS", 2)
    for count in (1, 2, 3, 5, 8, 13, 21):  # land on and off powers of two
        log(store, "m", points(0, count))
    tip, written = log(store, "m", points(100, 1))
    total = 1 + 2 + 3 + 5 + 8 + 13 + 21  # 53 points: chunks 0..26, the last half full
    assert list(written) == [metrics.chunk_path("m", 26)]
    assert len(list(metrics.history(store.snapshot(tip), "m"))) == total + 1


def test_keys_with_slashes_are_encoded_and_kept_apart(repo: Path, store: Store) -> None:
    log(store, "train", points(0, 2))
    log(store, "train/loss", points(0, 3))
    tip, _ = log(store, "train/loss/ema", points(0, 1))
    assert sorted(tree(repo, tip)) == [
        "metrics/0000/train%2Floss%2Fema.000000.tsv",
        "metrics/0000/train%2Floss.000000.tsv",
        "metrics/0000/train.000000.tsv",
    ]
    snap = store.snapshot(tip)
    assert len(list(metrics.history(snap, "train"))) == 2
    assert len(list(metrics.history(snap, "train/loss"))) == 3
    assert [m.key for m in metrics.history(snap, "train/loss/ema")] == ["train/loss/ema"]
    assert metrics.decode_key(metrics.encode_key("a/b/c")) == "a/b/c"


def test_history_round_trips_special_values_exactly_in_commit_order(store: Store) -> None:
    values = [0.1, math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308, 1 / 3, 7.0]
    steps = [5, 1, 3, 0, 9, 2, 2, 8, 4]  # not sorted: history keeps the order of logging
    lines = [
        metrics.line(s, 100 + i, v) for i, (s, v) in enumerate(zip(steps, values, strict=True))
    ]
    log(store, "m", lines[:4])
    log(store, "m", lines[4:7])
    tip, _ = log(store, "m", lines[7:])

    got = list(metrics.history(store.snapshot(tip), "m"))

    assert [m.step for m in got] == steps
    assert [m.timestamp for m in got] == [100 + i for i in range(len(values))]
    as_bits = [struct.pack(">d", m.value) for m in got]
    expected = [struct.pack(">d", v) for v in values]
    assert as_bits[:1] + as_bits[2:] == expected[:1] + expected[2:]  # -0.0 keeps its sign
    assert math.isnan(got[1].value)


def test_keys_with_dots_never_mix_with_chunk_numbers(store: Store) -> None:
    # "acc" chunk 1 is "acc.000001.tsv"; key "acc.000001" chunk 0 is "acc.000001.000000.tsv"
    log(store, "acc", points(0, metrics.CHUNK_POINTS + 1))
    tip, _ = log(store, "acc.000001", points(0, 2))
    snap = store.snapshot(tip)
    assert len(list(metrics.history(snap, "acc"))) == metrics.CHUNK_POINTS + 1
    assert len(list(metrics.history(snap, "acc.000001"))) == 2
    assert list(metrics.history(snap, "acc.0")) == []


def test_history_of_a_run_without_metrics(store: Store) -> None:
    tip = store.update(REF, lambda snap: Change({"run.yaml": b"x: 1\n"}), "start")
    assert tip is not None
    snap = store.snapshot(tip)
    assert list(metrics.history(snap, "loss")) == []
    assert metrics.append(None, "loss", points(0, 1)) == {
        "metrics/0000/loss.000000.tsv": b"0\t1000\t0.0\n"
    }


def test_a_flush_leaves_full_groups_untouched(
    repo: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "CHUNK_POINTS", 2)
    monkeypatch.setattr(metrics, "CHUNKS_PER_GROUP", 3)
    first, _ = log(store, "m", points(0, 13))  # chunks 0..6: groups 0000, 0001, 0002
    second, written = log(store, "m", points(13, 1))
    assert list(written) == ["metrics/0002/m.000006.tsv"]
    for group in ("0000", "0001"):
        assert git(repo, "rev-parse", f"{first}:metrics/{group}") == git(
            repo, "rev-parse", f"{second}:metrics/{group}"
        )
    assert [m.step for m in metrics.history(store.snapshot(second), "m")] == list(range(14))

"""The query index follows the refs: gitml's own updates, foreign ones, packing, damage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import gitml
from gitml.format.records import MetricValue
from gitml.query import index as index_module
from gitml.query.index import QueryIndex, hold_run, memory_index, read_run, records
from testing.cli import gitml_exe
from testing.git import commit_file_on_ref, git, init_repo

RUNS = "refs/gitml/runs/"


def indexed(index: QueryIndex) -> dict[str, str]:
    return dict(index.conn.execute("SELECT run_id, lower(hex(commit_sha)) FROM runs").fetchall())


def tips(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", RUNS)
    return {ref[len(RUNS) :]: sha for ref, sha in (ln.split() for ln in out.splitlines())}


def test_first_refresh_indexes_everything_then_only_what_moved(repo: Path) -> None:
    client = gitml.Client()
    runs = [client.create_run(run_name=f"r{i}").id for i in range(5)]
    index = client.index
    assert index.refresh() == 5
    assert indexed(index) == tips(repo)
    assert index.refresh() == 0  # nothing moved: a few stat calls
    client.log_batch(runs[2], params={"alpha": "0.1"})
    assert index.refresh() == 1
    assert indexed(index) == tips(repo)
    row = index.conn.execute(
        "SELECT p.value FROM params p JOIN runs r ON p.run = r.n WHERE r.run_id = ?", (runs[2],)
    ).fetchone()
    assert row == ("0.1",)


def test_runs_arriving_by_git_fetch_are_found(repo: Path, tmp_path: Path) -> None:
    client = gitml.Client()
    client.create_run(run_name="local")
    assert client.index.refresh() == 1
    other = init_repo(tmp_path / "other")
    remote = init_repo(tmp_path / "remote.git", bare=True)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gitml; c = gitml.Client(); "
            "[c.set_terminated(c.create_run(run_name=f'far{i}').id) for i in range(3)]",
        ],
        cwd=other,
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    git(other, "push", "-q", str(remote), "refs/gitml/*:refs/gitml/*")
    git(repo, "fetch", "-q", str(remote), "+refs/gitml/runs/*:refs/gitml/runs/*")
    assert client.index.refresh() == 3
    assert indexed(client.index) == tips(repo)
    conn = client.index.conn
    numbers = [row[0] for row in conn.execute("SELECT n FROM runs")]
    names = {r.name for r in records(conn, numbers)}
    assert names == {"local", "far0", "far1", "far2"}


def test_deleted_and_packed_refs(repo: Path) -> None:
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}").id for i in range(4)]
    client.index.refresh()
    git(repo, "pack-refs", "--all")
    assert client.index.refresh() == 0  # same tips, now packed
    assert indexed(client.index) == tips(repo)
    git(repo, "update-ref", "-d", RUNS + ids[0])
    client.log_batch(ids[1], tags={"after": "pack"})  # a loose ref over a packed one
    client.index.refresh()
    assert indexed(client.index) == tips(repo)
    assert ids[0] not in indexed(client.index)


def test_runs_packed_by_gitml_are_followed_from_the_log_and_any_other_rewrite_is_scanned(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}").id for i in range(4)]
    client.index.refresh()  # settles the client's writes
    made = tips(repo)
    for run_id in ids[1:]:
        git(repo, "update-ref", "-d", RUNS + run_id)
    git(repo, "pack-refs", "--all")  # no loose run refs: a rewrite touches no folder
    client.index.refresh()
    assert indexed(client.index) == {ids[0]: made[ids[0]]}
    assert client.store.create_packed({RUNS + i: made[i] for i in ids[1:]}) == {
        RUNS + i: made[i] for i in ids[1:]
    }

    def scan(*_: object) -> int:
        raise AssertionError("scanned the refs")

    with monkeypatch.context() as patched:
        patched.setattr(QueryIndex, "_scan", scan)
        assert client.index.refresh() == 3  # the log says what the rewrite added
    assert indexed(client.index) == made
    # Another tool rewrites packed-refs (as a lock file renamed over it), leaving a run out.
    packed = repo / ".git" / "packed-refs"
    kept = [ln for ln in packed.read_text().splitlines(True) if ids[2] not in ln]
    (repo / ".git" / "packed-refs.lock").write_text("".join(kept))
    os.replace(repo / ".git" / "packed-refs.lock", packed)
    assert client.index.refresh() == 1
    assert indexed(client.index) == tips(repo)
    assert ids[2] not in indexed(client.index)


def test_foreign_update_between_logged_updates_is_seen(repo: Path) -> None:
    client = gitml.Client()
    a, b = client.create_run(run_name="a").id, client.create_run(run_name="b").id
    client.index.refresh()
    commit_file_on_ref(repo, RUNS + a, "note.txt", "written by another tool\n")
    client.log_batch(b, params={"x": "1"})  # logged, but the folder moved before it too
    client.index.refresh()
    assert indexed(client.index) == tips(repo)


def test_malformed_record_is_reported_and_healed(repo: Path) -> None:
    client = gitml.Client()
    good, bad = client.create_run(run_name="good").id, client.create_run(run_name="bad").id
    client.index.refresh()
    commit_file_on_ref(repo, RUNS + bad, "run.yaml", "id: nope\n")
    client.index.refresh()
    assert set(indexed(client.index)) == {good}
    (problem,) = client.index.broken()
    assert RUNS + bad in problem and "run.yaml" in problem
    fixed = git(repo, "show", f"{RUNS}{bad}~1:run.yaml")
    commit_file_on_ref(repo, RUNS + bad, "run.yaml", fixed)
    client.index.refresh()
    assert set(indexed(client.index)) == {good, bad}
    assert client.index.broken() == []


def test_index_can_be_deleted_and_is_rebuilt(repo: Path) -> None:
    client = gitml.Client()
    for i in range(3):
        client.create_run(run_name=f"r{i}")
    client.index.refresh()
    path = client.index.path
    client.index.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    fresh = gitml.Client().index
    assert fresh.refresh() == 3
    assert indexed(fresh) == tips(repo)
    progress: list[tuple[int, int]] = []
    assert fresh.rebuild(lambda done, total: progress.append((done, total))) == 3
    assert progress[-1] == (3, 3)


def test_old_schema_is_replaced(repo: Path) -> None:
    client = gitml.Client()
    client.create_run()
    index = client.index
    index.refresh()
    index.conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    index.close()
    again = gitml.Client().index
    assert again.refresh() == 1
    assert len(indexed(again)) == 1


WRITER = """
import sys, gitml
c = gitml.Client()
for i in range(int(sys.argv[1])):
    r = c.create_run(run_name=f"w{i}")
    c.log_batch(r.id, params={"i": str(i)})
    c.set_terminated(r.id)
"""


@pytest.mark.slow
def test_readers_never_see_a_half_updated_index(repo: Path) -> None:
    client = gitml.Client()
    client.index.refresh()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, "15"], cwd=repo, env=dict(os.environ))
        for _ in range(3)
    ]
    errors: list[BaseException] = []
    seen: list[int] = []

    def read() -> None:
        reader = QueryIndex(client.store)
        try:
            while any(w.poll() is None for w in writers):
                reader.refresh()
                with reader.reading() as conn:
                    runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
                    params = conn.execute("SELECT count(*) FROM params").fetchone()[0]
                    finished = conn.execute(
                        "SELECT count(*) FROM runs WHERE status = 'FINISHED'"
                    ).fetchone()[0]
                # A run is indexed with all its rows or not at all: every
                # finished run logged its param first.
                assert params >= finished
                seen.append(runs)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            reader.close()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for w in writers:
        assert w.wait(timeout=120) == 0
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    client.index.refresh()
    assert len(indexed(client.index)) == 45
    assert indexed(client.index) == tips(repo)


def test_parallel_rebuild_gives_the_same_index(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitml.query import index as index_module

    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}", commit=True).id for i in range(12)]
    client.log_batch(ids[3], params={"alpha": "0.5"})
    commit_file_on_ref(repo, RUNS + ids[5], "run.yaml", "not: a run\n")
    monkeypatch.setattr(index_module, "PARALLEL_FROM", 2)
    monkeypatch.setattr(index_module, "CHUNK", 5)
    steps: list[tuple[int, int]] = []
    assert client.index.rebuild(lambda done, total: steps.append((done, total))) == 11
    assert indexed(client.index) == {k: v for k, v in tips(repo).items() if k != ids[5]}
    assert [e for e in client.index.broken() if ids[5] in e]
    assert steps[-1] == (12, 12)
    row = client.index.conn.execute(
        "SELECT p.value FROM params p JOIN runs r ON p.run = r.n WHERE r.run_id = ?", (ids[3],)
    )
    assert row.fetchone() == ("0.5",)


def test_a_large_batch_into_a_small_index_keeps_every_secondary_index(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitml.query import index as index_module

    monkeypatch.setattr(index_module, "BULK_FROM", 2)
    client = gitml.Client()
    first = client.create_run(run_name="first").id
    assert client.index.refresh() == 1  # one run added to none: no bulk
    ids = [client.create_run(run_name=f"r{i}").id for i in range(3)]
    client.log_batch(ids[1], params={"alpha": "0.5"})
    assert client.index.refresh() == 3  # three added to one: the indexes are made after
    names = {row[0] for row in client.index.conn.execute("SELECT name FROM sqlite_master")}
    assert names.issuperset(index_module._SECONDARY_INDEXES)
    assert indexed(client.index) == tips(repo) and first in tips(repo)
    found = client.search_runs(filter_string="params.alpha = '0.5'")
    assert [r.id for r in found] == [ids[1]]


def test_indexes_dropped_by_an_interrupted_rebuild_come_back(repo: Path) -> None:
    client = gitml.Client()
    client.create_run()
    client.index.refresh()
    client.index.conn.execute("DROP INDEX metrics_by_value")
    client.index.close()
    again = gitml.Client().index
    names = {row[0] for row in again.conn.execute("SELECT name FROM sqlite_master")}
    assert "metrics_by_value" in names


def test_the_ref_log_is_started_anew_once_read_past_its_limit(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "COMPACT_LOG_BYTES", 500)
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}", commit=True).id for i in range(5)]
    log = client.store.ref_log
    assert log.stat().st_size > 500
    assert client.index.refresh() == 5
    assert not log.exists()
    assert not log.with_suffix(".old").exists()  # what it said, the scan saw
    assert indexed(client.index) == tips(repo)
    client.log_batch(ids[3], params={"after": "compaction"})
    assert log.stat().st_size < 500
    assert client.index.refresh() == 1  # read from the new log
    assert indexed(client.index) == tips(repo)


def test_the_ref_log_is_started_anew_once_longer_than_its_share_per_run(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "COMPACT_LOG_FROM", 500)
    monkeypatch.setattr(index_module, "LOG_BYTES_PER_RUN", 200)
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}", commit=True).id for i in range(5)]
    log = client.store.ref_log
    assert 500 < log.stat().st_size <= 200 * 5
    assert client.index.refresh() == 5
    assert log.exists()  # within its share: 200 bytes for each of 5 runs
    for run_id in ids:
        client.log_batch(run_id, params={"more": "lines"})
    assert log.stat().st_size > 200 * 5
    assert client.index.refresh() == 5
    assert not log.exists()
    assert indexed(client.index) == tips(repo)


def test_runs_a_pull_moved_are_indexed_from_its_records_and_each_ref_read_once(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}", commit=True).id for i in range(3)]
    parsed = {
        run_id: read_run(sha, client.get_run(run_id).to_plain())
        for run_id, sha in tips(repo).items()
    }
    client.log_batch(ids[1], params={"later": "yes"})  # another writer, after the pull read it
    index = QueryIndex(client.store, tmp_path / "fresh.sqlite")
    assert index.add_moved(parsed) == 3
    assert indexed(index) == tips(repo)
    later = index.conn.execute(
        "SELECT p.value FROM params p JOIN runs r ON p.run = r.n WHERE r.run_id = ?", (ids[1],)
    ).fetchall()
    assert later == [("yes",)]  # indexed from where its ref is now, not the record given
    loose = {
        name: (inode, mtime) for name, inode, mtime in index.conn.execute("SELECT * FROM loose")
    }
    assert loose == client.store.loose_refs("refs/gitml/runs")

    def read(prefix: str, name: str) -> None:
        raise AssertionError(f"{name} read again")

    monkeypatch.setattr(client.store, "read_loose_ref_stamped", read)
    assert index.refresh() == 0  # the scan finds every ref where add_moved saw it
    assert indexed(index) == tips(repo)
    index.close()


def test_runs_packed_while_a_pull_indexes_them_are_read_from_packed_refs(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = gitml.Client()
    for i in range(3):
        client.create_run(run_name=f"r{i}")
    client.index.refresh()
    parsed = {
        run_id: read_run(sha, client.get_run(run_id).to_plain())
        for run_id, sha in tips(repo).items()
    }
    real = client.store.packed_tips

    def packed_then_pack() -> object:
        seen = real()  # before git packs the loose refs listed a moment ago
        git(repo, "pack-refs", "--all")
        return seen

    monkeypatch.setattr(client.store, "packed_tips", packed_then_pack)
    index = QueryIndex(client.store, tmp_path / "fresh.sqlite")
    assert index.add_moved(parsed) == 3
    assert indexed(index) == tips(repo)
    assert not list((repo / ".git" / "refs" / "gitml" / "runs").glob("*"))  # all packed
    index.close()


def test_a_long_run_of_digits_that_fits_is_indexed(repo: Path) -> None:
    """Numbers of 19 digits and more, written as text or within a float's range, are
    values SQLite takes: only an integer past 64 bits is refused."""
    client = gitml.Client()
    run = client.create_run(run_name="digits").id
    client.log_batch(run, params={"seed": "1" * 30})
    client.log_metric(run, "big", 9.9e300)
    found = client.search_runs(filter_string=f"params.seed = '{'1' * 30}'")
    assert [r.id for r in found] == [run]
    assert client.index.broken() == []


def test_one_index_serves_many_threads(repo: Path) -> None:
    client = gitml.Client()
    ids = {client.create_run(run_name=f"r{i}").id for i in range(5)}
    found: list[set[str]] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(10):
                found.append({run.id for run in client.search_runs(max_results=100)})
        except BaseException as exc:  # recorded for the main thread to fail on
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert found == [ids] * 60
    client.index.close()  # every thread's connection, from this one
    assert {run.id for run in client.search_runs()} == ids  # and it opens again


def _edit_record(repo: Path, run_id: str, old: str, new: str) -> None:
    """Change ``run.yaml`` with plain git, as a foreign tool would (no validation)."""
    text = git(repo, "show", f"{RUNS}{run_id}:run.yaml")
    assert old in text
    commit_file_on_ref(repo, RUNS + run_id, "run.yaml", text.replace(old, new, 1))


UNINDEXABLE = [
    (
        "metrics: {}",
        "metrics:\n  loss:\n    value: 1.0\n    step: 18446744073709551616\n    timestamp: 1",
        "metrics.loss.step",
        "64 bits",
    ),
    # A lone surrogate cannot be UTF-8: PyYAML refuses its escape, and so does gitml.
    ("params: {}", 'params:\n  "k\\ud800": v', "(document)", "invalid Unicode character"),
    ("tags: {}", 'tags:\n  t: "v\\udc00"', "(document)", "invalid Unicode character"),
    ("branch: main", 'branch: "ma\\udfffin"', "(document)", "invalid Unicode character"),
]


@pytest.mark.parametrize(
    ("old", "new", "field", "why"), UNINDEXABLE, ids=["step", "param-key", "tag", "branch"]
)
def test_a_value_sqlite_refuses_skips_that_run_only(
    repo: Path, old: str, new: str, field: str, why: str
) -> None:
    client = gitml.Client()
    good, bad = client.create_run(run_name="good").id, client.create_run(run_name="bad").id
    client.index.refresh()
    _edit_record(repo, bad, old, new)
    assert [run.id for run in client.search_runs()] == [good]
    (problem,) = client.index.broken()
    assert problem.startswith(f"{RUNS}{bad}:run.yaml: field '{field}': ")
    assert why in problem
    assert [run.id for run in gitml.Client().search_runs()] == [good]  # a fresh rebuild too
    assert gitml.Client().index.rebuild() == 1


def test_a_run_held_in_memory_is_indexed_as_a_refresh_would_or_refused_the_same_way(
    repo: Path,
) -> None:
    client = gitml.Client()
    run = client.get_run(client.create_run(run_name="held").id)
    conn = memory_index()
    assert hold_run(conn, run) is None
    assert conn.execute("SELECT run_id, name FROM runs").fetchall() == [(run.id, "held")]
    huge = run.model_copy(
        update={"metrics": {"loss": MetricValue(value=1.0, step=2**64, timestamp=1)}}
    )
    field, why = hold_run(conn, huge) or ("", "")
    assert field == "metrics.loss.step" and "64 bits" in why
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    # Text a model holds in memory may have lone surrogates (a file name's undecodable
    # bytes, say), which no YAML record can: in a map, and in a list of the source.
    for update, where in [
        ({"params": {"k": "v\udcff"}}, "params.k"),
        (
            {"source": run.source.model_copy(update={"omitted": ["a", "b\udcff"]})},
            "source.omitted[1]",
        ),
    ]:
        field, why = hold_run(conn, run.model_copy(update=update)) or ("", "")
        assert (field, "lone surrogate" in why) == (where, True)
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_a_start_time_beyond_64_bits_is_reported(repo: Path) -> None:
    client = gitml.Client()
    good, bad = (
        client.create_run(run_name="good", commit=True).id,
        client.create_run(run_name="bad", commit=True).id,
    )
    text = git(repo, "show", f"{RUNS}{bad}:run.yaml")
    start = next(ln for ln in text.splitlines() if ln.startswith("start_time: "))
    _edit_record(repo, bad, start, "start_time: 1" + "0" * 30)
    assert [run.id for run in client.search_runs()] == [good]
    (problem,) = client.index.broken()
    assert f"{RUNS}{bad}:run.yaml: field 'start_time': " in problem


def test_deeply_nested_yaml_is_reported_not_a_crash(repo: Path) -> None:
    """PyYAML's C loader recurses without a limit: this killed the process with SIGSEGV."""
    client = gitml.Client()
    good, bad = (
        client.create_run(run_name="good", commit=True).id,
        client.create_run(run_name="bad", commit=True).id,
    )
    other = client.create_run(run_name="other", commit=True).id
    commit_file_on_ref(repo, RUNS + bad, "run.yaml", "[" * 100_000)
    commit_file_on_ref(repo, RUNS + other, "run.yaml", "- " * 40_000 + "x\n")
    done = gitml_exe(repo, "runs", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert [run["id"] for run in json.loads(done.stdout)] == [good]
    warnings = done.stderr.splitlines()
    assert len([w for w in warnings if w.startswith("warning: skipped malformed record")]) == 2
    assert any(f"{RUNS}{bad}:run.yaml: field '(document)': not valid YAML" in w for w in warnings)


def test_a_run_ref_at_a_blob_or_a_run_yaml_folder_is_reported(repo: Path) -> None:
    client = gitml.Client()
    good = client.create_run(run_name="good").id
    blob = git(repo, "hash-object", "-w", "--stdin", stdin="not a commit\n").strip()
    git(repo, "update-ref", RUNS + "a" * 32, blob)
    folder = git(repo, "mktree", stdin=f"100644 blob {blob}\tinside\n").strip()
    tree = git(repo, "mktree", stdin=f"040000 tree {folder}\trun.yaml\n").strip()
    git(repo, "update-ref", RUNS + "b" * 32, git(repo, "commit-tree", tree, "-m", "x").strip())
    assert [run.id for run in client.search_runs()] == [good]
    first, second = client.index.broken()
    assert first.startswith(f"{RUNS}{'a' * 32}:run.yaml: field '(document)': ")
    assert f"object {blob} is a blob, not a commit" in first
    assert second.startswith(f"{RUNS}{'b' * 32}:run.yaml: field '(document)': ")


def test_a_record_made_again_from_its_rows_equals_the_one_in_git(repo: Path) -> None:
    """The index keeps no copy of a record: ``records`` makes it from its rows, and
    the fields no row holds (a snapshot, omitted files) from ``extra`` alone."""
    client = gitml.Client()
    parent = client.create_run(run_name="parent")
    plain = client.get_run(client.create_run(run_name="plain").id)
    rich = plain.model_copy(
        update={
            "id": "f" * 32,
            "name": "rîch ✓",
            "status": "FAILED",
            "lifecycle_stage": "deleted",
            "end_time": plain.start_time + 5,
            "parent_run_id": parent.id,
            "source": plain.source.model_copy(
                update={"snapshot": "a" * 40, "dirty": True, "omitted": ["big.bin"]}
            ),
            "params": {"lr": "0.1", "empty": ""},
            "tags": {"mlflow.note.content": "line\nbreak"},
            "metrics": {
                "loss": MetricValue(value=float("nan"), step=3, timestamp=9),
                "top": MetricValue(value=float("inf"), step=0, timestamp=1),
                "acc": MetricValue(value=0.1 + 0.2, step=2**40, timestamp=2),
            },
        }
    )
    conn = memory_index()
    for run in (plain, rich):
        assert hold_run(conn, run) is None
        (extra,) = conn.execute("SELECT extra FROM runs").fetchone()
        (back,) = records(conn, [row[0] for row in conn.execute("SELECT n FROM runs")])
        # NaN is not equal to itself: compare the records' YAML, which spells it .nan.
        assert back.to_yaml() == run.to_yaml()
        if run is plain:
            assert extra is None  # nothing outside the columns: no JSON at all
        else:
            assert json.loads(extra) == {"source": {"snapshot": "a" * 40, "omitted": ["big.bin"]}}

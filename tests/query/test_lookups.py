"""Child runs and per-experiment counts from the index."""

from __future__ import annotations

from pathlib import Path

import pytest

import gitml
from gitml.query.lookups import run_counts
from testing.git import git

T0 = 1_700_000_000_000


def test_child_runs_newest_first_and_by_view(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run(run_name="parent", start_time=T0)
    older = client.create_run(run_name="older", start_time=T0 + 1, parent_run_id=parent.id)
    newer = client.create_run(run_name="newer", start_time=T0 + 2, parent_run_id=parent.id)
    grandchild = client.create_run(start_time=T0 + 3, parent_run_id=newer.id)
    client.create_run(run_name="unrelated", start_time=T0 + 4)

    assert [r.id for r in client.get_child_runs(parent.id)] == [newer.id, older.id]
    assert [r.id for r in client.get_child_runs(newer.id)] == [grandchild.id]
    assert client.get_child_runs(grandchild.id) == []

    client.delete_run(older.id)
    assert [r.id for r in client.get_child_runs(parent.id)] == [newer.id]
    assert [r.id for r in client.get_child_runs(parent.id, "DELETED_ONLY")] == [older.id]
    assert len(client.get_child_runs(parent.id, "ALL")) == 2
    with pytest.raises(gitml.InvalidInput, match="run_view_type"):
        client.get_child_runs(parent.id, "SOME")


def test_fluent_nested_runs_are_children(repo: Path) -> None:
    with gitml.start_run() as outer, gitml.start_run(nested=True) as inner:
        pass
    children = gitml.Client().get_child_runs(outer.info.run_id)
    assert [r.id for r in children] == [inner.info.run_id]


def test_run_counts_by_experiment_and_stage(repo: Path) -> None:
    client = gitml.Client()
    runs = [client.create_run("a") for _ in range(3)] + [client.create_run("b")]
    client.delete_run(runs[0].id)
    a = client.get_or_create_experiment_id("a")
    b = client.get_or_create_experiment_id("b")
    assert run_counts(client.index) == {
        a: {"active": 2, "deleted": 1},
        b: {"active": 1, "deleted": 0},
    }
    # A run arriving from elsewhere (git update-ref) is counted at the next call.
    git(
        repo,
        "update-ref",
        "refs/gitml/runs/" + "e" * 32,
        git(repo, "rev-parse", f"refs/gitml/runs/{runs[3].id}").strip(),
    )
    assert run_counts(client.index)[b]["active"] == 1  # a copy with a mismatched id is broken
    assert len(client.index.broken()) == 1

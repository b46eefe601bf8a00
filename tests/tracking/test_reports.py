"""``run_details`` and ``compare_runs``: what ``gitml runs show`` and ``diff`` report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

import gitml
from gitml.tracking.reports import RunSummary, compare_runs, run_details
from testing.git import commit_file_on_ref, git, init_repo

T0 = 1_700_000_000_000


def test_details_of_a_parent_and_a_child(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run("churn", run_name="parent", start_time=T0)
    client.log_text(parent.id, "hello", "notes/hello.txt")
    child = client.create_run("churn", run_name="child", parent_run_id=parent.id)
    client.delete_run(child.id)

    details = run_details(client, parent.id)
    assert details.experiment is not None and details.experiment.name == "churn"
    assert [a.path for a in details.artifacts] == ["notes/hello.txt"]
    assert details.parent is None
    assert details.children == [RunSummary(child.id, "child", "RUNNING", "deleted")]

    plain = run_details(client, child.id).to_plain()
    assert plain["id"] == child.id and plain["experiment_name"] == "churn"
    assert plain["parent"] == {
        "id": parent.id,
        "name": "parent",
        "status": "RUNNING",
        "lifecycle_stage": "active",
    }
    assert plain["children"] == [] and plain["artifacts"] == []


def test_details_when_parent_and_experiment_are_missing(repo: Path) -> None:
    client = gitml.Client()
    parent = client.create_run("churn", run_name="parent")
    child = client.create_run("churn", run_name="child", parent_run_id=parent.id)
    git(repo, "update-ref", "-d", f"refs/gitml/runs/{parent.id}")
    git(repo, "update-ref", "-d", f"refs/gitml/experiments/{child.experiment_id}")
    details = run_details(gitml.Client(), child.id)
    assert details.parent is None and details.experiment is None
    assert details.run.parent_run_id == parent.id


def test_compare_params_metrics_tags_and_code(repo: Path) -> None:
    client = gitml.Client()
    a = client.create_run(start_time=T0)
    client.log_batch(
        a.id,
        metrics=[
            gitml.Metric("rmse", 0.8, T0, 0),
            gitml.Metric("mae", 0.5, T0, 0),
            gitml.Metric("nan", math.nan, T0, 0),
            gitml.Metric("same", 1.0, T0, 0),
        ],
        params={"alpha": "0.1", "model": "tree", "seed": "1"},
        tags={"team": "growth"},
    )
    (repo / "train.py").write_text("print('training')\nprint('better')\n")
    (repo / "data.csv").write_text("a,b\n")
    git(repo, "add", "data.csv")
    b = client.create_run(start_time=T0 + 1)
    client.log_batch(
        b.id,
        metrics=[
            gitml.Metric("rmse", 0.6, T0, 0),
            gitml.Metric("acc", 0.9, T0, 0),
            gitml.Metric("nan", math.nan, T0, 0),
            gitml.Metric("same", 1.0, T0, 0),
        ],
        params={"alpha": "0.5", "depth": "3", "seed": "1"},
        tags={"team": "growth"},
    )

    cmp = compare_runs(client, a.id, b.id)
    assert [(c.key, c.status, c.a, c.b) for c in cmp.params] == [
        ("alpha", "changed", "0.1", "0.5"),
        ("depth", "added", None, "3"),
        ("model", "removed", "tree", None),
    ]
    assert cmp.same_params == 1
    metrics = {c.key: c for c in cmp.metrics}
    assert list(metrics) == ["acc", "mae", "nan", "rmse", "same"]
    assert metrics["acc"].status == "added" and metrics["acc"].delta is None
    assert metrics["mae"].status == "removed"
    assert metrics["rmse"].status == "changed"
    assert metrics["rmse"].delta is not None and math.isclose(metrics["rmse"].delta, -0.2)
    assert metrics["nan"].status == "same" and metrics["same"].delta == 0.0
    assert cmp.tags == []

    code = cmp.code
    assert code.a == a.source.commit and b.source.snapshot is not None
    assert code.b == b.source.snapshot and code.reason is None
    assert code.files is not None
    assert [(f.path, f.status, f.added, f.removed) for f in code.files] == [
        ("data.csv", "added", 1, 0),
        ("train.py", "modified", 1, 0),
    ]
    assert (code.added, code.removed) == (2, 0)
    plain = cmp.to_plain()
    assert plain["code"]["files"][0]["path"] == "data.csv"
    assert plain["a"]["id"] == a.id and plain["same_params"] == 1

    same = compare_runs(client, a.id, a.id)
    assert same.params == [] and same.code.files == []


def test_compare_without_code(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    records = init_repo(tmp_path / "records.git", bare=True)
    monkeypatch.chdir(outside)
    client = gitml.Client(tracking_uri=str(records))
    no_code = client.create_run()
    cmp = compare_runs(client, no_code.id, no_code.id)
    assert cmp.code.files is None and cmp.code.a is None
    assert cmp.code.reason is not None and "recorded no code commit" in cmp.code.reason


def test_compare_with_code_missing_from_the_repository(repo: Path) -> None:
    client = gitml.Client()
    a, b = client.create_run(commit=True), client.create_run(commit=True)
    # As if b's record came from a remote whose code commit was never fetched.
    ref = f"refs/gitml/runs/{b.id}"
    record = yaml.safe_load(git(repo, "show", f"{ref}:run.yaml"))
    record["source"]["commit"] = "0" * 40
    commit_file_on_ref(repo, ref, "run.yaml", yaml.safe_dump(record))
    cmp = compare_runs(gitml.Client(), a.id, b.id)
    assert cmp.code.files is None and cmp.code.b == "0" * 40
    assert cmp.code.reason is not None and "missing from" in cmp.code.reason

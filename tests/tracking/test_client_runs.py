"""``Client.delete_tag`` and how ``resolve_run_id`` names the candidates of a prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import gitml
from testing.git import commit_file_on_ref, git

RUNS = "refs/gitml/runs/"


def test_delete_tag_is_a_commit(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run(tags={"team": "growth", "keep": "yes"}, commit=True)
    before = git(repo, "rev-parse", RUNS + run.id).strip()
    client.delete_tag(run.id, "team")
    assert client.get_run(run.id).tags == {"keep": "yes"}
    log = git(repo, "log", "--format=%s", f"{before}..{RUNS}{run.id}").splitlines()
    assert log == [f"gitml: delete tag team of run {run.id[:12]}"]
    with pytest.raises(gitml.NotFound, match="has no tag 'team'"):
        client.delete_tag(run.id, "team")
    with pytest.raises(gitml.NotFound, match="no run"):
        client.delete_tag("0" * 32, "team")


def test_delete_a_tag_still_in_the_buffer(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.set_tag(run.id, "fresh", "1")  # journaled, not committed yet
    client.delete_tag(run.id, "fresh")
    assert "fresh" not in gitml.Client().get_run(run.id).tags


def test_ambiguous_prefix_lists_candidates_with_names(repo: Path) -> None:
    client = gitml.Client()
    runs = [client.create_run(run_name=f"run-{i}") for i in range(40)]
    by_digit: dict[str, list[gitml.Run]] = {}
    for run in runs:
        by_digit.setdefault(run.id[0], []).append(run)
    digit, group = max(by_digit.items(), key=lambda kv: len(kv[1]))
    assert len(group) > 1
    with pytest.raises(gitml.InvalidInput) as caught:
        client.resolve_run_id(digit)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"run id prefix '{digit}' is ambiguous; {len(group)} runs match:"
    shown = sorted(group, key=lambda r: r.id)[:10]
    assert lines[1 : 1 + len(shown)] == [f"  {r.id}  {r.name}" for r in shown]
    assert lines[-1] == "Give more characters of the id."

    # More than ten candidates: ten are named, the rest counted.
    many = [f"{i:02d}" for i in range(12)]
    for run, suffix in zip(runs, many, strict=False):
        tip = git(repo, "rev-parse", RUNS + run.id).strip()
        git(repo, "update-ref", f"{RUNS}ffff{suffix}{'0' * 26}", tip)
    with pytest.raises(gitml.InvalidInput) as caught:
        client.resolve_run_id("ffff")
    lines = str(caught.value).splitlines()
    assert "12 runs match" in lines[0]
    assert len(lines) == 1 + 10 + 2 and lines[-2] == "  ... and 2 more"
    # Copies under another name are malformed records; they are still listed.
    assert lines[1].endswith("(malformed record)")


def test_a_full_id_and_a_unique_prefix(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    assert client.resolve_run_id(run.id) == run.id
    assert client.resolve_run_id(run.id[:8]) == run.id
    with pytest.raises(gitml.NotFound):
        client.resolve_run_id("")


def test_a_malformed_record_still_resolves(repo: Path) -> None:
    client = gitml.Client()
    a = client.create_run(commit=True)
    record = yaml.safe_load(git(repo, "show", f"{RUNS}{a.id}:run.yaml"))
    record["status"] = "EXPLODED"
    commit_file_on_ref(repo, RUNS + a.id, "run.yaml", yaml.safe_dump(record))
    assert client.resolve_run_id(a.id[:10]) == a.id  # resolving needs no valid record


def test_import_run_writes_a_run_made_elsewhere_as_one_commit(repo: Path) -> None:
    from gitml.format.records import Experiment, MetricValue, Run

    client = gitml.Client()
    assert client.import_experiment(Experiment(id="7", name="old", creation_time=5, tags={}))
    assert not client.import_experiment(Experiment(id="7", name="old", creation_time=5, tags={}))
    with pytest.raises(gitml.Conflict, match="taken by 'old'"):
        client.import_experiment(Experiment(id="7", name="other", creation_time=5))
    run_id = "0123456789abcdef0123456789abcdef"
    record = Run(
        id=run_id,
        experiment_id="7",
        name="kept",
        status="FAILED",
        start_time=10,
        end_time=20,
        user="ada",
        params={"p": "1"},
        metrics={"m": MetricValue(value=2.0, step=1, timestamp=12)},
    )
    points = [gitml.Metric("m", 1.0, 11, 0), gitml.Metric("m", 2.0, 12, 1)]
    client.import_run(record, {"m": points}, [("notes/a.txt", b"hello")])
    ref = f"refs/gitml/runs/{run_id}"
    assert git(repo, "rev-list", "--count", ref).strip() == "1"
    assert client.get_run(run_id) == record
    assert client.read_artifact(run_id, "notes/a.txt") == b"hello"

    later = record.model_copy(update={"status": "FINISHED"})
    client.import_run(later, {"m": [gitml.Metric("m", 3.0, 13, 2)]})
    assert git(repo, "rev-list", "--count", ref).strip() == "2"
    assert client.get_run(run_id).status == "FINISHED"
    assert [p.value for p in client.get_metric_history(run_id, "m")] == [1.0, 2.0, 3.0]
    assert client.read_artifact(run_id, "notes/a.txt") == b"hello"

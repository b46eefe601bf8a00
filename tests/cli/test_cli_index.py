"""``gitml index rebuild|status`` and the run counts of ``gitml experiments list``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gitml
from gitml.cli import index as index_cli
from testing.cli import cli, gitml_exe
from testing.git import git

RUNS = "refs/gitml/runs/"


def test_rebuild_and_status(repo: Path) -> None:
    client = gitml.Client()
    ids = [client.create_run(run_name=f"r{i}").id for i in range(3)]
    result = cli("index", "rebuild")
    assert result.stdout.startswith("Indexed 3 runs in ")
    assert result.stderr == ""  # no progress bar when nobody watches

    state = json.loads(cli("index", "status", "--json").stdout)
    assert state["runs"] == 3 and state["broken"] == []
    assert state["path"] == str(repo / ".git" / "gitml" / "index.sqlite")
    assert state["size_bytes"] > 0 and state["refreshed_at"] is not None

    text = cli("index", "status").stdout.splitlines()
    assert text[0].split() == ["path", state["path"]]
    assert text[1].split() == ["runs", "3"]
    assert text[2].split() == ["malformed", "0"]

    tip = git(repo, "rev-parse", RUNS + ids[0]).strip()
    git(repo, "update-ref", RUNS + "f" * 32, tip)
    result = cli("index", "rebuild")
    assert "Indexed 3 runs (1 malformed records skipped)" in result.stdout
    assert result.stderr.startswith("warning: skipped malformed record refs/gitml/runs/ffff")
    text = cli("index", "status").stdout
    assert "malformed  1" in text and RUNS + "f" * 32 in text


def test_rebuild_after_the_index_is_deleted(repo: Path) -> None:
    gitml.Client().create_run(run_name="kept")
    cli("runs", "list")
    for path in (repo / ".git" / "gitml").glob("index.sqlite*"):
        path.unlink()
    assert "Indexed 1 runs" in cli("index", "rebuild").stdout
    assert [r["name"] for r in json.loads(cli("runs", "list", "--json").stdout)] == ["kept"]


def test_rebuild_shows_progress_on_a_terminal(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = gitml.Client()
    for _ in range(2):
        client.create_run()
    monkeypatch.setattr(index_cli, "_interactive", lambda: True)
    result = cli("index", "rebuild")
    assert "Indexing runs" in result.stderr
    assert "Indexed 2 runs" in result.stdout


def test_status_of_a_repository_without_runs(repo: Path) -> None:
    state = json.loads(cli("index", "status", "--json").stdout)
    assert state["runs"] == 0 and state["refreshed_at"] is None
    assert "refreshed  never" in cli("index", "status").stdout


def test_experiments_list_counts_runs(repo: Path) -> None:
    client = gitml.Client()
    runs = [client.create_run("churn") for _ in range(3)]
    client.delete_run(runs[0].id)
    client.create_experiment("empty")
    rows = {
        line.split()[1]: line.split()[3:]
        for line in cli("experiments", "list").stdout.splitlines()[1:]
    }
    assert rows == {"churn": ["2", "1"], "empty": ["0", "0"]}
    listed = {e["name"]: e["runs"] for e in json.loads(cli("experiments", "list", "--json").stdout)}
    assert listed == {"churn": {"active": 2, "deleted": 1}, "empty": {"active": 0, "deleted": 0}}


def test_executable_rebuild_is_quiet_when_piped(repo: Path) -> None:
    gitml.Client().create_run()
    done = gitml_exe(repo, "index", "rebuild")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.startswith("Indexed 1 runs")

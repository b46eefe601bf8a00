"""``gitml models register|list|show|versions|tag|describe|delete-version|delete``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gitml
from gitml.format.layout import MODELS
from testing.cli import cli, gitml_exe, one_error_line
from testing.git import commit_file_on_ref, git
from testing.registry import log_iris_run


@pytest.fixture
def uri(repo: Path) -> str:
    """``runs:/<id>/model`` of a logged iris classifier in the work repository."""
    run_id, _, _ = log_iris_run(gitml.Client())
    return f"runs:/{run_id}/model"


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def test_register_prints_the_version_and_its_commit(repo: Path, uri: str) -> None:
    out = cli("models", "register", uri, "churn", "-d", "first", "--tag", "team=growth").stdout
    tip = git(repo, "rev-parse", MODELS + "churn").strip()
    assert out == f"registered churn version 1 (commit {tip[:12]})\n"
    out = json.loads(cli("models", "register", uri, "churn", "--json").stdout)
    assert out["commit"] == git(repo, "rev-parse", MODELS + "churn").strip()
    assert out["version"]["version"] == 2 and out["version"]["source"] == uri
    first = json.loads(cli("models", "versions", "churn", "--json").stdout)[0]
    assert (first["description"], first["tags"]) == ("first", {"team": "growth"})


def test_register_refuses_bad_input_and_writes_nothing(repo: Path, uri: str) -> None:
    before = refs(repo)
    line = one_error_line(cli("models", "register", uri, "churn", "--tag", "nokey", ok=False))
    assert "tag 'nokey': expected KEY=VALUE" in line
    line = one_error_line(cli("models", "register", uri + "x", "churn", ok=False))
    assert "no model at 'modelx'" in line
    line = one_error_line(cli("models", "register", "s3://bucket/m", "churn", ok=False))
    assert "runs:/<run_id>/<path>" in line
    line = one_error_line(cli("models", "register", uri, "a/b", ok=False))
    assert "model name 'a/b'" in line
    assert refs(repo) == before


def test_list_shows_the_latest_version_and_description(uri: str) -> None:
    empty = cli("models", "list")
    assert empty.stdout == "" and "no registered models" in empty.stderr
    assert json.loads(cli("models", "list", "--json").stdout) == []
    for name in ("churn", "churn", "fraud"):
        cli("models", "register", uri, name)
    cli("models", "describe", "churn", "predicts who leaves")
    cli("models", "delete-version", "churn", "2")
    lines = cli("models", "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "LATEST", "VERSIONS", "CREATED", "(UTC)", "DESCRIPTION"]
    assert lines[1].split()[:3] == ["churn", "1", "1"]
    assert lines[1].endswith("predicts who leaves")
    assert lines[2].split()[:3] == ["fraud", "1", "1"]
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["latest_version"], m["versions"]) for m in listed] == [
        ("churn", 1, 1),
        ("fraud", 1, 1),
    ]
    assert set(listed[0]) == {
        "name",
        "latest_version",
        "versions",
        "description",
        "creation_time",
        "tags",
    }
    assert listed[0]["description"] == "predicts who leaves"


def test_show_lists_versions_and_the_stages_declaring_them(uri: str) -> None:
    for _ in range(3):
        cli("models", "register", uri, "churn")
    cli("models", "tag", "churn", "team=growth")
    cli("stage", "assign", "churn", "1", "production")
    cli("stage", "assign", "churn", "2", "production", "--archive-existing")
    cli("stage", "assign", "churn", "2", "staging")
    cli("stage", "assign", "churn", "3", "staging", "--weight", "10")
    out = cli("models", "show", "churn").stdout
    assert "tags         team=growth" in out
    assert "stages       staging v2 (90%) + v3 (10%), production v2, archived v1" in out
    rows = {ln.split()[0]: ln for ln in out.split("Versions\n")[1].splitlines()[1:]}
    assert "staging 90%, production" in rows["2"] and "staging 10%" in rows["3"]
    assert "archived" in rows["1"]
    data = json.loads(cli("models", "show", "churn", "--json").stdout)
    assert data["model"]["name"] == "churn" and data["model"]["tags"] == {"team": "growth"}
    assert [v["version"] for v in data["versions"]] == [1, 2, 3]
    digest = {v["version"]: v["digest"] for v in data["versions"]}
    assert data["stages"]["production"] == {
        "versions": [{"version": 2, "weight": 100, "digest": digest[2]}],
        "note": None,
    }
    assert data["stages"]["staging"]["versions"] == [
        {"version": 2, "weight": 90, "digest": digest[2]},
        {"version": 3, "weight": 10, "digest": digest[3]},
    ]
    assert set(data["stages"]) == {"production", "staging", "archived"}


def test_versions_hides_deleted_ones_unless_all(uri: str) -> None:
    for _ in range(3):
        cli("models", "register", uri, "churn")
    assert cli("models", "delete-version", "churn", "2").stdout == "deleted churn version 2\n"
    live = json.loads(cli("models", "versions", "churn", "--json").stdout)
    assert [v["version"] for v in live] == [1, 3]
    every = json.loads(cli("models", "versions", "churn", "--all", "--json").stdout)
    assert [(v["version"], v["status"]) for v in every] == [
        (1, "READY"),
        (2, "DELETED"),
        (3, "READY"),
    ]
    table = cli("models", "versions", "churn", "--all").stdout.splitlines()
    assert table[0].split()[:3] == ["VERSION", "STATUS", "CREATED"]
    assert [ln.split()[:2] for ln in table[1:]] == [
        ["1", "READY"],
        ["2", "DELETED"],
        ["3", "READY"],
    ]
    assert len(cli("models", "versions", "churn").stdout.splitlines()) == 3


def test_tag_a_model_or_a_version(uri: str) -> None:
    cli("models", "register", uri, "churn")
    assert cli("models", "tag", "churn", "team=growth", "tier=1").stdout == "tagged model churn\n"
    cli("models", "tag", "churn", "--delete", "tier")
    model = json.loads(cli("models", "show", "churn", "--json").stdout)["model"]
    assert model["tags"] == {"team": "growth"}
    out = cli("models", "tag", "churn", "1", "validated=yes", "note=a=b").stdout
    assert out == "tagged churn version 1\n"
    cli("models", "tag", "churn", "1", "owner=ada", "--delete", "validated")
    version = json.loads(cli("models", "versions", "churn", "--json").stdout)[0]
    assert version["tags"] == {"note": "a=b", "owner": "ada"}


def test_tag_errors_say_what_was_wrong(repo: Path, uri: str) -> None:
    cli("models", "register", uri, "churn")
    before = refs(repo)
    line = one_error_line(cli("models", "tag", "churn", "v1", "a=b", ok=False))
    assert "'v1' is neither a VERSION (a positive integer) nor KEY=VALUE" in line
    line = one_error_line(cli("models", "tag", "churn", "7", "a=b", ok=False))
    assert "model 'churn' has no version 7" in line
    line = one_error_line(cli("models", "tag", "churn", "0", "a=b", ok=False))
    assert "positive integer" in line
    line = one_error_line(cli("models", "tag", "nope", "a=b", ok=False))
    assert "no registered model 'nope'" in line
    line = one_error_line(cli("models", "tag", "churn", "1", "a=b", "oops", ok=False))
    assert "tag 'oops': expected KEY=VALUE" in line
    assert cli("models", "tag", "churn", ok=False).exit_code == 2
    assert refs(repo) == before


def test_describe_a_model_or_a_version(uri: str) -> None:
    cli("models", "register", uri, "churn")
    assert cli("models", "describe", "churn", "who leaves").stdout == "described model churn\n"
    out = cli("models", "describe", "churn", "1", "trained on 2025").stdout
    assert out == "described churn version 1\n"
    data = json.loads(cli("models", "show", "churn", "--json").stdout)
    assert data["model"]["description"] == "who leaves"
    assert data["versions"][0]["description"] == "trained on 2025"
    assert cli("models", "describe", "churn", "1", "a", "b", ok=False).exit_code == 2
    line = one_error_line(cli("models", "describe", "churn", "x", "text", ok=False))
    assert "model version must be a positive integer, got 'x'" in line
    line = one_error_line(cli("models", "describe", "nope", "text", ok=False))
    assert "no registered model 'nope'" in line


def test_delete_version_warns_when_a_stage_still_declares_it(uri: str) -> None:
    cli("models", "register", uri, "churn")
    cli("stage", "assign", "churn", "1", "production")
    result = cli("models", "delete-version", "churn", "1")
    assert result.stdout == "deleted churn version 1\n"
    assert "warning: production still declare(s) version 1" in result.stderr
    line = one_error_line(cli("models", "delete-version", "churn", "5", ok=False))
    assert "model 'churn' has no version 5" in line
    line = one_error_line(cli("models", "delete-version", "churn", "-", ok=False))
    assert "positive integer" in line
    line = one_error_line(cli("models", "versions", "nope", ok=False))
    assert "no registered model 'nope'" in line


def test_delete_is_refused_while_a_stage_declares_the_model_then_leaves_a_tombstone(
    repo: Path, uri: str
) -> None:
    cli("models", "register", uri, "churn")
    cli("stage", "assign", "churn", "1", "production")
    line = one_error_line(cli("models", "delete", "churn", ok=False))
    assert "refs/heads/gitml/production" in line and "gitml stage remove" in line
    cli("stage", "remove", "production", "churn")
    assert cli("models", "delete", "churn").stdout == (
        "deleted model churn (its history stays on refs/gitml/models/churn)\n"
    )
    assert json.loads(cli("models", "list", "--json").stdout) == []
    assert "was deleted" in one_error_line(cli("models", "show", "churn", ok=False))
    subjects = git(repo, "log", "--first-parent", "--format=%s", MODELS + "churn").splitlines()
    assert subjects[0] == "gitml: delete model churn"
    assert subjects[-1] == "gitml: create model churn"


def test_models_list_as_a_real_process(repo: Path, uri: str) -> None:
    cli("models", "register", uri, "churn")
    done = gitml_exe(repo, "models", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)] == ["churn"]
    done = gitml_exe(repo, "models", "show", "nope")
    assert done.returncode == 1 and done.stderr == "error: no registered model 'nope'\n"


def test_list_shows_every_good_record_and_warns_about_bad_ones(repo: Path, uri: str) -> None:
    for name in ("churn", "churn", "fraud", "spam"):
        cli("models", "register", uri, name)
    commit_file_on_ref(repo, MODELS + "churn", "versions/1.yaml", "name: churn\nversion: one\n")
    commit_file_on_ref(repo, MODELS + "fraud", "model.yaml", "[not, a, mapping]\n")
    listed = cli("models", "list", "--json")
    found = [(m["name"], m["latest_version"], m["versions"]) for m in json.loads(listed.stdout)]
    assert found == [("churn", 2, 1), ("spam", 1, 1)]
    assert listed.stderr.splitlines() == [
        f"warning: skipped malformed record {MODELS}fraud:model.yaml: field '(document)': "
        "expected a mapping at the top level",
        f"warning: skipped malformed record {MODELS}churn:versions/1.yaml: field 'version': "
        "Input should be a valid integer",
    ]
    table = cli("models", "list")
    assert [line.split()[0] for line in table.stdout.splitlines()] == ["NAME", "churn", "spam"]
    assert table.stderr == listed.stderr

"""``gitml stage assign|show|history|rollback|remove|describe``."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.errors import NotFound
from gitml.format import yamlio
from gitml.format.records import Config
from gitml.git.store import Store
from gitml.registry import lineage_render
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.cli import cli, gitml_exe, one_error_line
from testing.git import FixedClock, git, init_repo
from testing.procs import child_env
from testing.registry import log_iris_run

PRODUCTION = "refs/heads/gitml/production"
PROPOSAL = "refs/heads/gitml/proposals/production/churn-v2"
ARCHIVED = "refs/heads/gitml/archived"


@pytest.fixture
def churn(repo: Path) -> Path:
    """The work repository with versions 1, 2 and 3 of model ``churn``."""
    run_id, _, _ = log_iris_run(gitml.Client())
    for _ in range(3):
        cli("models", "register", f"runs:/{run_id}/model", "churn")
    return repo


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def declared(repo: Path, ref: str = PRODUCTION) -> dict[str, Any]:
    """The declaration of ``churn`` on ``ref``, as stored."""
    data: dict[str, Any] = yamlio.load(git(repo, "show", f"{ref}:models/churn.yaml").encode())
    return data


def served(repo: Path, version: int, weight: int = 100) -> dict[str, Any]:
    """How a stage declares ``version`` of ``churn``: number, weight and digest."""
    record = git(repo, "show", f"refs/gitml/models/churn:versions/{version}.yaml")
    digest = yamlio.load(record.encode())["digest"]
    return {"version": version, "weight": weight, "digest": digest}


def iso(unix: int) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def commit_time(repo: Path, rev: str) -> str:
    return iso(int(git(repo, "log", "-1", "--format=%ct", rev)))


def unix(text: str) -> int:
    return int(
        datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp()
    )


# -- assign ----------------------------------------------------------------------------------


def test_assign_commits_on_the_stage_branch(churn: Path) -> None:
    out = cli("stage", "assign", "churn", "1", "production", "-m", "beats the baseline").stdout
    tip = git(churn, "rev-parse", PRODUCTION).strip()
    assert out == f"production: churn v1 ({tip[:12]})\n"
    assert declared(churn) == {
        "model": "churn",
        "versions": [served(churn, 1)],
        "note": "beats the baseline",
    }
    message = git(churn, "log", "-1", "--format=%B", PRODUCTION)
    assert message.startswith("gitml: production: churn v1\n")
    assert "Gitml-Stage: production" in message and "Gitml-Version: 1" in message

    out = cli("stage", "assign", "churn", "1", "production", "-m", "beats the baseline").stdout
    assert out == "production already declares churn v1; nothing to commit\n"
    assert git(churn, "rev-parse", PRODUCTION).strip() == tip


def test_archive_existing_lists_the_replaced_version(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    out = cli("stage", "assign", "churn", "2", "production", "--archive-existing").stdout
    assert out.splitlines()[0].startswith("production: churn v2 (")
    assert out.splitlines()[1] == "archived: churn v1"
    archived = declared(churn, "refs/heads/gitml/archived")
    assert archived["versions"] == [served(churn, 1, 0)]


def test_a_canary_keeps_the_declared_version_beside_it(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    out = cli("stage", "assign", "churn", "2", "production", "--weight", "10").stdout
    assert out.startswith("production: churn v1 (90%) + v2 (10%) (")
    line = one_error_line(
        cli("stage", "assign", "churn", "3", "production", "--weight", "0", ok=False)
    )
    assert "weight must be an integer from 1 to 100, got 0" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["churn", "9", "production"], "model 'churn' has no version 9"),
        (["churn", "x", "production"], "model version must be a positive integer, got 'x'"),
        (["churn", "0", "production"], "model version must be a positive integer, got '0'"),
        (["churn", "1", "prod"], "stage 'prod' is not one of this project's stages"),
        (["churn", "1", "Prod/x"], "stage 'Prod/x': use lowercase letters"),
        (["nope", "1", "production"], "no registered model 'nope'"),
        (["churn", "1", "archived", "--weight", "101"], "weight must be an integer from 1 to 100"),
    ],
)
def test_assign_errors_change_nothing(churn: Path, args: list[str], message: str) -> None:
    before = refs(churn)
    line = one_error_line(cli("stage", "assign", *args, ok=False))
    assert message in line
    assert refs(churn) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push", "origin"], "--push REMOTE needs --propose"),
        (
            ["--propose", "--archive-existing"],
            "--archive-existing cannot be combined with --propose",
        ),
    ],
)
def test_bad_flag_combinations_are_usage_errors(churn: Path, args: list[str], message: str) -> None:
    before = refs(churn)
    result = cli("stage", "assign", "churn", "1", "production", *args, ok=False)
    assert result.exit_code == 2 and message in result.stderr
    assert refs(churn) == before


def test_a_deleted_version_cannot_be_assigned(churn: Path) -> None:
    cli("models", "delete-version", "churn", "3")
    line = one_error_line(cli("stage", "assign", "churn", "3", "staging", ok=False))
    assert "model 'churn' version 3 was deleted" in line


# -- proposals --------------------------------------------------------------------------------


def test_propose_makes_a_branch_on_top_of_the_stage(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    stage_tip = git(churn, "rev-parse", PRODUCTION).strip()
    result = cli("stage", "assign", "churn", "2", "production", "--propose")
    proposal = git(churn, "rev-parse", PROPOSAL).strip()
    assert result.stdout == (
        "proposed churn v2 for production on branch "
        f"gitml/proposals/production/churn-v2 ({proposal[:12]})\n"
    )
    # No remote's gitml/production was fetched here: the pull request needs it pushed too.
    assert "git push <remote> gitml/production gitml/proposals/production/churn-v2" in (
        result.stderr
    )
    assert git(churn, "rev-parse", f"{proposal}^").strip() == stage_tip
    assert git(churn, "rev-parse", PRODUCTION).strip() == stage_tip  # the stage waits for review
    assert declared(churn, PROPOSAL)["versions"] == [served(churn, 2)]
    line = one_error_line(cli("stage", "assign", "churn", "2", "production", "--propose", ok=False))
    assert "proposal branch gitml/proposals/production/churn-v2 already exists" in line


def test_a_refused_proposal_creates_no_branch(churn: Path) -> None:
    before = refs(churn)
    args = ("stage", "assign", "churn", "2", "staging", "--weight", "10", "--propose")
    line = one_error_line(cli(*args, ok=False))
    assert "a canary of 10% needs exactly one other version of 'churn'" in line
    assert refs(churn) == before  # not even the stage branch the proposal would start from


def test_propose_and_push_to_a_real_remote(churn: Path, tmp_path: Path) -> None:
    remote = init_repo(tmp_path / "remote.git", bare=True)
    git(churn, "remote", "add", "origin", str(remote))
    out = cli("stage", "assign", "churn", "2", "production", "--propose", "--push", "origin").stdout
    # A first promotion: the pull request needs the stage branch on the remote too.
    assert out.splitlines()[1] == (
        "pushed gitml/production and gitml/proposals/production/churn-v2 to origin; "
        "open a pull request into gitml/production"
    )
    for ref in (PROPOSAL, PRODUCTION):
        pushed = git(remote, "ls-remote", str(remote), ref).split()
        assert pushed == [git(churn, "rev-parse", ref).strip(), ref]
    # The next proposal finds the stage branch there and pushes only itself.
    out = cli("stage", "assign", "churn", "3", "production", "--propose", "--push", "origin").stdout
    assert out.splitlines()[1].startswith("pushed gitml/proposals/production/churn-v3 to origin;")


def test_a_failed_push_is_one_error_with_gits_message(churn: Path, tmp_path: Path) -> None:
    result = cli(
        "stage", "assign", "churn", "2", "production", "--propose", "--push", "nowhere", ok=False
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("proposed churn v2 for production")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: git push nowhere ")
    assert "'nowhere' does not appear to be a git repository" in errors[0]
    assert "push it again with 'git push nowhere gitml/proposals/production/churn-v2'" in errors[0]


# -- show and --at ----------------------------------------------------------------------------


def test_show_every_stage_or_one(churn: Path) -> None:
    assert cli("stage", "show").stderr == "no stage declares a model\n"
    cli("stage", "assign", "churn", "1", "staging")
    cli("stage", "assign", "churn", "2", "production", "-m", "approved in #12")
    lines = cli("stage", "show").stdout.splitlines()
    assert lines[0].split() == ["STAGE", "MODEL", "VERSIONS", "COMMIT", "NOTE"]
    assert [ln.split()[:3] for ln in lines[1:]] == [
        ["staging", "churn", "v1"],
        ["production", "churn", "v2"],
    ]
    assert lines[2].endswith("approved in #12")
    assert len(cli("stage", "show", "production").stdout.splitlines()) == 2
    data = json.loads(cli("stage", "show", "--json").stdout)
    assert [s["stage"] for s in data] == ["staging", "production", "archived"]
    assert data[1] == {
        "stage": "production",
        "ref": PRODUCTION,
        "commit": git(churn, "rev-parse", PRODUCTION).strip(),
        "models": [{"model": "churn", "versions": [served(churn, 2)], "note": "approved in #12"}],
    }
    assert data[2] == {"stage": "archived", "ref": ARCHIVED, "commit": None, "models": []}
    line = one_error_line(cli("stage", "show", "prod", ok=False))
    assert (
        "stage 'prod' is not one of this project's stages (staging, production, archived)" in line
    )


def test_show_follows_edits_of_the_settings_and_refuses_bad_ones(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    data = json.loads(cli("stage", "show", "--json").stdout)
    assert [s["stage"] for s in data] == ["staging", "production", "archived"]
    # The settings are cached by their bytes: an edit is read at once.
    (churn / ".gitml.yaml").write_text("stages: [qa, production]\narchive_stage: null\n")
    data = json.loads(cli("stage", "show", "--json").stdout)
    assert [s["stage"] for s in data] == ["qa", "production"]
    assert data[1]["models"][0]["versions"] == [served(churn, 1)]
    # A bad file gets its precise error every time: nothing about it is kept.
    (churn / ".gitml.yaml").write_text("stages: [QA]\n")
    for _ in range(2):
        line = one_error_line(cli("stage", "show", ok=False))
        assert ".gitml.yaml" in line and "stages.0" in line
    (churn / ".gitml.yaml").unlink()
    assert [s["stage"] for s in json.loads(cli("stage", "show", "--json").stdout)] == [
        "staging",
        "production",
        "archived",
    ]


def test_show_at_a_time_gives_the_declaration_then(churn: Path) -> None:
    clock = FixedClock(unix("2026-11-01T10:00:00"))
    client = gitml.Client(clock=clock)
    stages = Stages(Registry(client), client.config)
    stages.assign("churn", 1, "production")
    clock.now = unix("2026-11-01T14:00:00")
    stages.assign("churn", 2, "production")

    def at(text: str) -> list[int]:
        data = json.loads(cli("stage", "show", "production", "--at", text, "--json").stdout)
        return [v["version"] for m in data[0]["models"] for v in m["versions"]]

    assert at("2026-11-01T12:00") == [1]
    assert at("2026-11-01T10:00:00") == [1]
    assert at("2026-11-01T13:59:59Z") == [1]
    assert at("2026-11-01T14:00:00Z") == [2]
    assert at("2026-11-01T15:30+02:00") == [1]  # 13:30 UTC
    assert at("2026-11-01T09:30-05:00") == [2]  # 14:30 UTC
    assert at("2026-11-01 16:00") == [2]
    assert at("2026-11-01T09:59") == []
    out = cli("stage", "show", "production", "--at", "2026-11-01T12:00")
    assert out.stdout.splitlines()[1].split()[:3] == ["production", "churn", "v1"]
    early = cli("stage", "show", "--at", "2026-11-01T09:00")
    assert early.stderr == "no stage declared a model at 2026-11-01 09:00:00 UTC\n"


@pytest.mark.parametrize(
    "text",
    ["2026-11-01", "yesterday", "2026-11-01T12", "2026-13-01T12:00", "2026-11-01T12:00+25:00", ""],
)
def test_show_at_refuses_other_times(churn: Path, text: str) -> None:
    line = one_error_line(cli("stage", "show", "production", "--at", text, ok=False))
    assert line.startswith(f"error: --at {text!r}: expected a time like 2026-11-01T12:00")


# -- history ----------------------------------------------------------------------------------


def test_history_says_who_changed_what_and_when(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    cli("stage", "assign", "churn", "2", "production", "-m", "better")
    lines = cli("stage", "history", "production").stdout.splitlines()
    assert lines[0].split() == [
        "TIME", "(UTC)", "COMMIT", "AUTHOR", "MODEL", "CHANGE", "SUBJECT", "MERGED"
    ]  # fmt: skip
    assert (
        "Test Committer  churn  v1 -> v2" in lines[1] and "gitml: production: churn v2" in lines[1]
    )
    assert "nothing -> v1" in lines[2]
    data = json.loads(cli("stage", "history", "production", "--json").stdout)
    assert [c["change"] for c in data] == ["v1 -> v2", "nothing -> v1"]
    newest = data[0]
    assert set(newest) == {
        "commit", "time", "author", "model", "before", "after", "change", "subject", "merge"
    }  # fmt: skip
    assert newest["commit"] == git(churn, "rev-parse", PRODUCTION).strip()
    assert newest["author"] == "Test Committer <committer@example.com>"
    assert newest["time"] == commit_time(churn, PRODUCTION)
    assert newest["after"] == {"versions": [served(churn, 2)], "note": "better"}
    assert newest["merge"] is None
    assert (
        len(json.loads(cli("stage", "history", "production", "--limit", "1", "--json").stdout)) == 1
    )
    assert cli("stage", "history", "production", "--model", "fraud").stderr == (
        "no changes to 'fraud' on stage 'production'\n"
    )
    assert cli("stage", "history", "staging").stderr == "no changes on stage 'staging'\n"
    line = one_error_line(cli("stage", "history", "prod", ok=False))
    assert "stage 'prod' is not one of this project's stages" in line


def test_history_filters_by_model(churn: Path) -> None:
    run_id = json.loads(cli("models", "versions", "churn", "--json").stdout)[0]["run_id"]
    cli("models", "register", f"runs:/{run_id}/model", "fraud")
    cli("stage", "assign", "churn", "1", "production")
    cli("stage", "assign", "fraud", "1", "production")
    every = json.loads(cli("stage", "history", "production", "--json").stdout)
    assert [c["model"] for c in every] == ["fraud", "churn"]
    only = json.loads(cli("stage", "history", "production", "--model", "churn", "--json").stdout)
    assert [c["model"] for c in only] == ["churn"]


def test_history_names_the_merge_of_a_proposal(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    cli("stage", "assign", "churn", "2", "production", "--propose")
    base = git(churn, "rev-parse", PRODUCTION).strip()
    proposal = git(churn, "rev-parse", PROPOSAL).strip()
    # What a forge's "merge pull request" button does: a two-parent commit on the stage.
    merge = git(
        churn,
        "commit-tree",
        f"{proposal}^{{tree}}",
        "-p",
        base,
        "-p",
        proposal,
        "-m",
        "Merge pull request #7 from gitml/proposals/production/churn-v2",
    ).strip()
    git(churn, "update-ref", PRODUCTION, merge, base)

    newest = json.loads(cli("stage", "history", "production", "--json").stdout)[0]
    assert newest["commit"] == merge
    assert newest["merge"] == {
        "commit": proposal,
        "branch": "gitml/proposals/production/churn-v2",
        "proposed_by": "Test Committer <committer@example.com>",
        "proposed_at": commit_time(churn, proposal),
    }
    assert newest["subject"] == "Merge pull request #7 from gitml/proposals/production/churn-v2"
    assert newest["change"] == "v1 -> v2"
    row = cli("stage", "history", "production").stdout.splitlines()[1]
    assert "Merge pull request #7" in row and row.endswith(proposal[:12])
    assert cli("stage", "show", "production").stdout.splitlines()[1].split()[2] == "v2"


# -- rollback and remove ------------------------------------------------------------------------


def test_rollback_restores_the_previous_declaration(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    line = one_error_line(cli("stage", "rollback", "production", "churn", ok=False))
    assert "there is nothing to roll back to" in line
    cli("stage", "assign", "churn", "2", "production")
    out = cli("stage", "rollback", "production", "churn", "-m", "v2 leaks memory").stdout
    tip = git(churn, "rev-parse", PRODUCTION).strip()
    assert out == f"production: churn v2 -> v1 ({tip[:12]})\n"
    assert declared(churn)["versions"] == [served(churn, 1)]
    assert declared(churn)["note"] == "v2 leaks memory"
    assert "Gitml-Rollback-Of: " in git(churn, "log", "-1", "--format=%B", PRODUCTION)
    assert len(git(churn, "rev-list", PRODUCTION).split()) == 3  # a new commit, not a reset
    line = one_error_line(cli("stage", "rollback", "staging", "churn", ok=False))
    assert "stage 'staging' has never declared 'churn'" in line
    line = one_error_line(cli("stage", "rollback", "prod", "churn", ok=False))
    assert "stage 'prod' is not one of this project's stages" in line


@pytest.mark.slow
def test_a_rolled_back_version_leaves_the_archive_stage(churn: Path) -> None:
    for args in (["1", "production"], ["2", "production", "--archive-existing"]):
        assert gitml_exe(churn, "stage", "assign", "churn", *args).returncode == 0
    done = gitml_exe(churn, "stage", "rollback", "production", "churn", "-m", "v2 leaks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "archived: churn v1 no longer listed"
    shown = gitml_exe(churn, "models", "show", "churn", "--json")
    assert json.loads(shown.stdout)["stages"] == {
        "production": {"versions": [served(churn, 1)], "note": "v2 leaks"}
    }
    assert "models/churn.yaml" not in git(churn, "ls-tree", "-r", "--name-only", ARCHIVED)

    # Assigning an archived version directly takes it off the archive too.
    cli("stage", "assign", "churn", "3", "production", "--archive-existing")
    out = cli("stage", "assign", "churn", "1", "staging").stdout
    assert out.splitlines()[1] == "archived: churn v1 no longer listed"
    assert "models/churn.yaml" not in git(churn, "ls-tree", "-r", "--name-only", ARCHIVED)


def test_remove_stops_declaring_a_model(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    out = cli("stage", "remove", "production", "churn", "-m", "retired").stdout
    tip = git(churn, "rev-parse", PRODUCTION).strip()
    assert out == f"production: removed churn ({tip[:12]})\n"
    assert git(churn, "ls-tree", "-r", "--name-only", PRODUCTION, "models") == ""
    assert json.loads(cli("stage", "history", "production", "--json").stdout)[0]["change"] == (
        "v1 -> nothing"
    )
    line = one_error_line(cli("stage", "remove", "production", "churn", ok=False))
    assert "stage 'production' declares no version of 'churn'" in line
    line = one_error_line(cli("stage", "remove", "production", "a/b", ok=False))
    assert "model name 'a/b'" in line


# -- describe -----------------------------------------------------------------------------------


def test_describe_prints_the_markdown_the_library_writes(
    churn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, Config]] = []

    def describe_stage_change(store: Store, rev: str, config: Config) -> str:
        calls.append((str(store.root), rev, config))
        if rev == "nope":
            raise NotFound("no commit 'nope'")
        return "## production: churn v2\n\n- run abc\n"

    monkeypatch.setattr(lineage_render, "describe_stage_change", describe_stage_change)
    rev = "gitml/proposals/production/churn-v2"
    out = cli("stage", "describe", rev).stdout
    assert out == "## production: churn v2\n\n- run abc\n"
    assert calls[0][:2] == (str(churn), rev) and calls[0][2].stages[1] == "production"
    data = json.loads(cli("stage", "describe", rev, "--json").stdout)
    assert data == {"rev": rev, "markdown": "## production: churn v2\n\n- run abc\n"}
    assert one_error_line(cli("stage", "describe", "nope", ok=False)) == "error: no commit 'nope'"


def test_describe_a_proposal_for_its_pull_request(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    cli("stage", "assign", "churn", "2", "production", "--propose", "-m", "better recall")
    out = cli("stage", "describe", "gitml/proposals/production/churn-v2").stdout
    assert out.startswith("## gitml: production: churn v1 -> v2\n")
    assert "### churn: v1 -> v2" in out and "> better recall" in out
    line = one_error_line(cli("stage", "describe", "main", ok=False))
    assert "'main'" in line and "is not a stage change" in line


# -- as a process ---------------------------------------------------------------------------------


def test_stage_show_as_a_real_process_stays_light(churn: Path) -> None:
    cli("stage", "assign", "churn", "1", "production")
    done = gitml_exe(churn, "stage", "show", "production", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["models"][0]["model"] == "churn"
    done = gitml_exe(churn, "stage", "show", "--at", "soon")
    assert done.returncode == 1 and done.stderr.startswith("error: --at 'soon': expected")
    # The start-up budget (200 ms) leaves no room for the query index or numpy,
    # nor, for records validated before (the assignment and the first show), pydantic.
    script = (
        "import sys\n"
        "from gitml.cli import main\n"
        "main(['stage', 'show'], standalone_mode=False)\n"
        "heavy = ('numpy', 'pandas', 'sklearn', 'pydantic', 'yaml', 'gitml.format.records',\n"
        "         'gitml.query.index', 'gitml.models')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=churn,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stdout

"""``gitml validate`` on files given by name, and on records no loader may expand."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import gitml
from testing.cli import cli
from testing.git import commit_file_on_ref, git
from testing.procs import child_env, limit_memory
from testing.records import billion_laughs


def problems(*args: str) -> list[str]:
    """The lines ``gitml validate ARGS`` prints, asserting it failed as a user error."""
    result = cli("validate", *args, ok=False)
    assert result.exit_code == 1, (result.output, result.exception)
    assert "internal error" not in result.stderr and result.stdout == ""
    return result.stderr.splitlines()


def test_a_file_that_is_not_there_is_named_once(repo: Path) -> None:
    Path("models").mkdir()
    assert problems("run.yaml") == ["run.yaml: field '(document)': no such file"]
    assert problems("models/churn.yaml", "notes.txt") == [
        "models/churn.yaml: field '(document)': no such file",
        "notes.txt: field '(document)': no such file",
    ]
    assert problems("models") == ["models: field '(document)': not a file"]


def test_a_file_that_cannot_be_read_is_named_with_why(repo: Path) -> None:
    # /proc/self/mem is a regular file whose reads fail (EIO) even for root.
    Path("MLmodel").symlink_to("/proc/self/mem")
    assert problems("MLmodel") == ["MLmodel: field '(document)': Input/output error"]


def test_a_config_with_two_policy_blocks_is_refused_naming_both_lines(repo: Path) -> None:
    Path(".gitml.yaml").write_text(
        "policy:\n  ordered: true\nstages: [staging, production]\n"
        "policy:\n  stages: {production: {tags: [ok]}}\n"
    )
    expected = (
        ".gitml.yaml: field '(document)': not valid YAML: "
        "key 'policy' appears twice (lines 1 and 4)"
    )
    assert problems(".gitml.yaml") == [expected]
    # Every command reading the settings refuses them the same way.
    result = cli("stage", "show", ok=False)
    assert result.exit_code == 1 and "key 'policy' appears twice (lines 1 and 4)" in result.stderr


def test_a_declaration_with_two_versions_keys_is_refused(repo: Path) -> None:
    Path("models").mkdir()
    Path("models/churn.yaml").write_text(
        "model: churn\nversions:\n- {version: 1, weight: 100}\nversions:\n- {version: 2}\n"
    )
    assert problems("models/churn.yaml") == [
        "models/churn.yaml: field '(document)': not valid YAML: "
        "key 'versions' appears twice (lines 2 and 4)"
    ]


def test_a_committed_record_with_a_key_twice_is_refused_on_its_ref(repo: Path) -> None:
    client = gitml.Client()
    run_id = client.create_run().id
    client.close()
    ref = f"refs/gitml/runs/{run_id}"
    text = git(repo, "show", f"{ref}:run.yaml")
    commit_file_on_ref(repo, ref, "run.yaml", text + "status: FINISHED\n")
    line = text.splitlines().index("status: RUNNING") + 1
    last = len(text.splitlines()) + 1
    assert problems("--all") == [
        f"{ref}:run.yaml: field '(document)': not valid YAML: "
        f"key 'status' appears twice (lines {line} and {last})"
    ]


@pytest.mark.parametrize("how", ["--all", "--ref"])
def test_a_billion_laughs_run_is_refused_at_once(repo: Path, how: str) -> None:
    client = gitml.Client()
    run_id = client.create_run().id
    client.close()
    ref = f"refs/gitml/runs/{run_id}"
    bomb = billion_laughs(git(repo, "show", f"{ref}:run.yaml"))
    assert len(bomb) < 1000
    commit_file_on_ref(repo, ref, "run.yaml", bomb)
    args = ["--all"] if how == "--all" else ["--ref", ref]
    started = time.monotonic()
    done = subprocess.run(
        ["gitml", "validate", *args],
        cwd=repo,
        env=child_env(),
        preexec_fn=limit_memory(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    line = bomb.splitlines().index("  l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]") + 1
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"{ref}:run.yaml: field '(document)': not valid YAML: line {line}: alias *l0: "
        "records take no anchors and aliases; write the value out\n",
    ), took

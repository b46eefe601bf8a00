"""The ``gitml-validate`` hook of ``.pre-commit-hooks.yaml``, run by the real ``pre-commit``.

``pre-commit try-repo`` installs the hook's repository into a virtualenv of
its own. It clones the repository at HEAD; with uncommitted changes it adds
tracked files to a shadow commit but leaves untracked ones out, so a work
tree with new modules would be tested incompletely. The test therefore
commits a snapshot of the project as it is on disk (tracked and untracked,
not ignored) to a temporary repository and points ``try-repo`` at that.

Hermetic: HOME and PRE_COMMIT_HOME are temporary; the hook's virtualenv sees
this interpreter's site-packages (so the project's dependencies are not
downloaded) and, where pip is configured with local ``file://`` indexes, pip
uses only those (the build backend comes from there), so no network is used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import gitml
from gitml.format.records import Config
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.git import IDENTITY, FixedClock, git, init_repo
from testing.registry import log_iris_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def snapshot_project(into: Path) -> Path:
    """A one-commit repository holding the project's files as they are on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    git(into, "init", "-q")
    git(into, "add", "-A")
    git(into, "commit", "-q", "-m", "snapshot of the work tree")
    return into


def pip_env(env: dict[str, str]) -> None:
    """Keep pip on the machine's local indexes when it has some; reuse installed packages."""
    env["VIRTUALENV_SYSTEM_SITE_PACKAGES"] = "1"
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    local: list[str] = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("index-url"):
            local += [u for u in value.strip("'\"").split() if u.startswith("file:")]
    if local:
        env["PIP_INDEX_URL"] = local[0]
        env["PIP_EXTRA_INDEX_URL"] = " ".join(local)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if not (ROOT / ".git").exists() or shutil.which("pre-commit") is None:
        pytest.skip("needs the project's Git work tree and the pre-commit tool")
    return snapshot_project(tmp_path / "project")


def try_repo(sample: Path, project: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(home),
        "PRE_COMMIT_HOME": str(home / "pre-commit"),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        **IDENTITY,
    }
    pip_env(env)
    return subprocess.run(
        ["pre-commit", "try-repo", str(project), "gitml-validate", "--all-files", "--color=never"],
        cwd=sample,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_try_repo_passes_good_records_and_names_bad_ones(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = init_repo(tmp_path / "sample")
    monkeypatch.chdir(sample)
    client = gitml.Client(clock=FixedClock(), identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    Stages(registry, Config()).assign("churn", 1, "staging")
    client.close()
    # The user reviews a stage change on the checked-out stage branch.
    git(sample, "checkout", "-q", "gitml/staging")
    runs = sample / "runs"
    runs.mkdir()
    (runs / "run.yaml").write_text(git(sample, "show", f"refs/gitml/runs/{run_id}:run.yaml"))
    (sample / "MLmodel").write_text(
        git(sample, "show", f"refs/gitml/runs/{run_id}:artifacts/model/MLmodel")
    )
    git(sample, "add", "-A")

    home = tmp_path / "home"
    home.mkdir()
    done = try_repo(sample, project, home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gitml validate" in done.stdout and "Passed" in done.stdout

    (sample / "models" / "churn.yaml").write_text(
        "model: churn\nversions:\n- {version: 1, weight: 90}\n"
    )
    (sample / "models" / "fraud.yaml").write_text("model: fraud\nversions:\n- {version: 1}\n")
    record = yaml.safe_load((runs / "run.yaml").read_text())
    record["status"] = "EXPLODED"
    (runs / "run.yaml").write_text(yaml.safe_dump(record))
    manifest = yaml.safe_load(git(sample, "show", f"refs/gitml/runs/{run_id}:artifacts.yaml"))
    manifest["artifacts"][0]["path"] = "model/../../.bashrc"
    (runs / "artifacts.yaml").write_text(yaml.safe_dump(manifest))
    git(sample, "add", "-A")
    done = try_repo(sample, project, home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed" in done.stdout
    lines = done.stdout.splitlines()
    assert "models/churn.yaml: field 'versions': weights sum to 90, not 100" in lines
    assert (
        "models/fraud.yaml: field 'versions.0.version': no registered model 'fraud' "
        "(refs/gitml/models/fraud)"
    ) in lines
    assert any(
        line.startswith("runs/run.yaml: field 'status': 'EXPLODED' is not one of") for line in lines
    ), lines
    assert any(
        line.startswith("runs/artifacts.yaml: field 'artifacts.0.path': 'model/../../.bashrc' ")
        for line in lines
    ), lines


def documented_config() -> str:
    """The ``.pre-commit-config.yaml`` README's "Pre-commit" section tells users to write."""
    section = (ROOT / "README.md").read_text().split("\n## Pre-commit\n", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_documented_set_up_checks_commits_on_every_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("pre-commit") is None:
        pytest.skip("needs the pre-commit tool")
    sample = init_repo(tmp_path / "sample")
    monkeypatch.chdir(sample)
    (sample / ".pre-commit-config.yaml").write_text(documented_config())
    git(sample, "add", ".pre-commit-config.yaml")
    git(sample, "commit", "-q", "-m", "pre-commit")
    client = gitml.Client(clock=FixedClock(), identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    digest = registry.register(f"runs:/{run_id}/model", "churn").digest
    Stages(registry, Config()).assign("churn", 1, "staging")
    client.close()
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(home),
        "PRE_COMMIT_HOME": str(home / "pre-commit"),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        **IDENTITY,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        """``args`` in the sample; git passes the hook's output on, to either stream."""
        return subprocess.run(
            args,
            cwd=sample,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )

    assert run("pre-commit", "install").returncode == 0
    git(sample, "checkout", "-q", "gitml/staging")
    declaration = sample / "models" / "churn.yaml"
    declaration.write_text("model: churn\nversions:\n- {version: 2, weight: 100}\n")
    done = run("git", "commit", "-qam", "churn v2")
    assert done.returncode == 0, done.stdout
    assert re.search(r"^gitml validate\.+Passed$", done.stdout, re.M), done.stdout
    good = git(sample, "rev-parse", "HEAD")

    # A digest that is not version 2's: the number would serve another model.
    other = "sha256:" + "0" * 64
    declaration.write_text(f"model: churn\nversions:\n- {{version: 2, digest: '{other}'}}\n")
    done = run("git", "commit", "-qam", "churn v2 of another clone")
    assert done.returncode == 1, done.stdout
    assert (
        "models/churn.yaml: field 'versions.0.digest': gitml/staging declares churn v2 "
        f"(digest sha256:000000000000), but churn v2 here is the version registered from run "
        f"{run_id} (digest {digest[:19]}): this declaration would serve a different model"
    ) in done.stdout
    assert git(sample, "rev-parse", "HEAD") == good

    declaration.write_text("model: churn\nversions:\n- {version: 2, weight: 90}\n")
    done = run("git", "commit", "-qam", "churn at 90%")
    assert done.returncode == 1, done.stdout
    assert re.search(r"^gitml validate\.+Failed$", done.stdout, re.M), done.stdout
    assert "models/churn.yaml: field 'versions': weights sum to 90, not 100" in done.stdout
    assert git(sample, "rev-parse", "HEAD") == good

    # On the default branch the same install checks the project's own records.
    git(sample, "checkout", "-q", "-f", "main")
    (sample / ".gitml.yaml").write_text("policy: {ordered: true}\npolicy: {}\n")
    git(sample, "add", ".gitml.yaml")
    done = run("git", "commit", "-qm", "policy")
    assert done.returncode == 1, done.stdout
    assert (
        ".gitml.yaml: field '(document)': not valid YAML: "
        "key 'policy' appears twice (lines 1 and 2)"
    ) in done.stdout

"""The runnable examples, end to end, as a user would run them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gitml import projects
from gitml.tracking.client import Client
from testing.procs import child_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_script(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    env = child_env(TMPDIR=str(tmp_path))
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== gitml runs list" in out
    assert '"classes": [' in out  # the artifact, fetched digest-checked
    # The run's git log walks from the run's commits into the code commit.
    log = out.split("the run is a Git ref whose history reaches the code commit", 1)[1]
    lines = log.strip().splitlines()
    assert any(line.split(" ", 1)[1] == "Add training script" for line in lines[:-1])
    assert lines[0].split(" ", 1)[1].startswith("gitml: ")
    project = Path(lines[-1].removeprefix("Demo project left in "))
    assert project.is_relative_to(tmp_path)
    fsck = subprocess.run(
        ["git", "fsck", "--full"], cwd=project, env=env, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr


@pytest.mark.slow
def test_the_wine_project_needs_only_the_sklearn_extra(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/project runs without pandas, as `pip install 'gitml[sklearn]'` leaves it."""
    pytest.importorskip("sklearn")
    hidden = tmp_path / "without-pandas" / "pandas"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named pandas')\n")
    path = [str(hidden.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    project = shutil.copytree(ROOT / "examples" / "project", repo / "project")
    done = projects.run(str(project), parameters={"C": 0.5}, env_manager="local")
    assert done.status == "FINISHED", Client().read_artifact(done.run_id, "project.log").decode()
    run = Client().get_run(done.run_id)
    assert run.metrics["accuracy"].value > 0.9
    assert "model/MLmodel" in {a.path for a in Client().list_artifacts(done.run_id, "model")}


def test_ci_workflow_runs_commands_gitml_has() -> None:
    """examples/ci/stage-pr.yml cannot run here; its gitml commands and options must exist."""
    import shlex

    import yaml
    from click.testing import CliRunner

    from gitml.cli import main

    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "stage-pr.yml").read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert trigger["pull_request"]["branches"] == ["gitml/**"]
    steps = workflow["jobs"]["validate"]["steps"]
    lines = [ln for s in steps for ln in s.get("run", "").splitlines() if ln.startswith("gitml ")]
    assert [ln.split()[:3] for ln in lines] == [
        ["gitml", "validate", "--ref"],
        ["gitml", "stage", "describe"],
    ]
    for line in lines:
        words = shlex.split(line.split(">", 1)[0])[1:]
        command = [w for w in words if not w.startswith(("-", "$"))]
        options = [w for w in words if w.startswith("--")]
        shown = CliRunner().invoke(main, [*command, "--help"])
        assert shown.exit_code == 0, (line, shown.output)
        assert all(option in shown.output for option in options), (line, shown.output)


def test_deploy_example_runs_the_reconciler_with_options_it_has() -> None:
    """examples/deploy/: the manifest's and the Containerfile's command lines must parse."""
    import json
    import shlex

    import yaml
    from click.testing import CliRunner

    from gitml.cli import main

    documents = list(yaml.safe_load_all((ROOT / "examples/deploy/kubernetes.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert sorted(kinds) == ["Deployment", "Secret", "Service"]
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    cmd = next(
        ln for ln in (ROOT / "examples/deploy/Containerfile").read_text().splitlines()
        if ln.startswith("CMD ")
    )  # fmt: skip
    shell = json.loads(cmd[len("CMD ") :])[-1]
    help_text = CliRunner().invoke(main, ["reconcile", "--help"]).output
    for words in (container["command"], shlex.split(shell.removeprefix("exec "))):
        assert words[:2] == ["gitml", "reconcile"]
        options = [w for w in words if w.startswith("--")]
        assert "--token-file" in options and "--remote" in options
        assert all(option in help_text for option in options), (options, help_text)

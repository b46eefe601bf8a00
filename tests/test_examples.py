"""The runnable examples, end to end, as a user would run them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitml import projects
from gitml.tracking.client import Client
from testing.procs import child_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
JSON = {"Content-Type": "application/json"}


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


# A curl call of README.md, its continuation line and, for the first, the answer shown.
_CURL = re.compile(
    r"^(curl -s 127\.0\.0\.1:(\d+)(\S+) -H 'Content-Type: application/json' \\\n"
    r"  -d '([^']*)'[^\n]*)(?:\n#   (\{.*\}))?",
    re.MULTILINE,
)


@pytest.mark.slow
def test_readme_curl_calls_fit_the_quickstart_model(tmp_path: Path) -> None:
    """README's scoring calls, run as written (curl) against `gitml models serve` of a
    model trained by examples/quickstart/train.py."""
    import httpx2

    import gitml
    from testing.git import git, init_repo
    from testing.serving import free_socket

    repo = init_repo(tmp_path / "work")
    shutil.copy(ROOT / "examples" / "quickstart" / "train.py", repo / "train.py")
    git(repo, "commit", "-qam", "quickstart")
    env = child_env()
    subprocess.run([sys.executable, "train.py"], cwd=repo, env=env, check=True, capture_output=True)
    (run,) = gitml.Client(str(repo)).list_runs()[0]

    calls = _CURL.findall((ROOT / "README.md").read_text())
    assert [(port, path) for _, port, path, _, _ in calls] == [
        ("5000", "/invocations"),
        ("8080", "/models/churn/invocations"),
    ]
    with free_socket() as sock:
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        ["gitml", "models", "serve", "-m", f"runs:/{run.id}/model", "--port", str(port)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            return httpx2.get(f"{url}/health").status_code == 200

        wait_for(answers, 60, "the server to answer /health", retry_on=(httpx2.TransportError,))
        command, _, _, _, answer = calls[0]
        done = subprocess.run(
            ["bash", "-c", command.replace("127.0.0.1:5000", f"127.0.0.1:{port}")],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(done.stdout) == json.loads(answer) == {"predictions": [0, 2]}
        # The reconciler's call sends the same rows; the scoring app takes them alike.
        body = calls[1][3]
        response = httpx2.post(f"{url}/invocations", content=body, headers=JSON)
        assert response.status_code == 200 and response.json() == json.loads(answer)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_github_ruleset_guards_production_with_the_stage_workflows_check() -> None:
    """examples/github/production-ruleset.json cannot be applied here; what it asks of
    GitHub must name gitml's production branch and the check stage-pr.yml reports."""
    import json

    import yaml

    ruleset = json.loads((ROOT / "examples" / "github" / "production-ruleset.json").read_text())
    assert ruleset["target"] == "branch" and ruleset["enforcement"] == "active"
    assert ruleset["conditions"]["ref_name"]["include"] == ["refs/heads/gitml/production"]
    rules = {rule["type"]: rule.get("parameters", {}) for rule in ruleset["rules"]}
    assert {"deletion", "non_fast_forward", "pull_request"} <= set(rules)
    assert rules["pull_request"]["required_approving_review_count"] >= 1
    assert rules["pull_request"]["require_code_owner_review"] is True
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "stage-pr.yml").read_text())
    checks = rules["required_status_checks"]["required_status_checks"]
    assert [check["context"] for check in checks] == list(workflow["jobs"])


@pytest.mark.slow
def test_codeowners_on_the_production_branch_passes_the_hook_and_outlives_promotions(
    repo: Path, tmp_path: Path
) -> None:
    """examples/github/protect-stages.sh against a bare remote with gitml's hook; ``gh``
    (GitHub's API, out of reach here) is a script that records how it was called."""
    import gitml
    from gitml.registry.stages import Stages
    from gitml.registry.versions import Registry
    from testing.cli import cli
    from testing.git import git, init_repo
    from testing.registry import log_iris_run

    server = init_repo(tmp_path / "server.git", bare=True)
    cli("hook", "install", "--server", "--repo", str(server))
    git(repo, "remote", "add", "origin", str(server))
    git(repo, "push", "-q", "origin", "main")
    client = gitml.Client(identity="Ada <ada@example.com>")
    registry = Registry(client)
    run_id, _, _ = log_iris_run(client)
    for _ in range(2):
        registry.register(f"runs:/{run_id}/model", "churn")
    stages = Stages(registry, client.config)
    stages.assign("churn", 1, "production")
    cli("push")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "gh-calls"}\n')
    (bin_dir / "gh").chmod(0o755)
    script = ROOT / "examples" / "github" / "protect-stages.sh"
    env = child_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(script), "acme/churn"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ruleset = ROOT / "examples" / "github" / "production-ruleset.json"
    calls = (tmp_path / "gh-calls").read_text().splitlines()
    assert calls == [f"api --method POST repos/acme/churn/rulesets --input {ruleset}"]
    owners = (ROOT / "examples" / "github" / "CODEOWNERS").read_text()
    production = "refs/heads/gitml/production"
    assert git(server, "show", f"{production}:.github/CODEOWNERS") == owners

    # gitml's next promotion keeps the file, and the hook accepts it.
    cli("pull")
    stages.assign("churn", 2, "production")
    cli("push")
    assert git(server, "show", f"{production}:.github/CODEOWNERS") == owners
    assert git(server, "show", f"{production}:models/churn.yaml") == git(
        repo, "show", f"{production}:models/churn.yaml"
    )
    # The history walk steps over the commit that is not gitml's: a rollback finds v1.
    back = stages.rollback("production", "churn")
    assert back.after is not None and [v.version for v in back.after.versions] == [1]
    client.close()

"""Running projects for real: from a folder and from a Git URL, then reproducing them."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gitml import projects
from gitml.cli import main
from gitml.errors import GitmlError, InvalidInput, NotFound
from gitml.projects.run import LOG_ARTIFACT
from gitml.tracking.client import Client
from testing.git import git
from testing.procs import child_env, finish, read_until, spawn
from testing.projects import bare_remote, commit_all, write_project

# A script that logs to the run gitml created for it (GITML_RUN_ID).
TRAIN = """
import os, sys
import gitml
print("to stdout", flush=True)
print("to stderr", file=sys.stderr, flush=True)
with gitml.start_run() as run:
    assert run.run_id == os.environ["RUN_EXPECTED"] or os.environ["RUN_EXPECTED"] == "any"
    gitml.log_metric("alpha_seen", float(sys.argv[1]))
    gitml.set_tag("script", "train.py")
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""

MLPROJECT = """
name: demo
entry_points:
  main:
    parameters:
      alpha: float
      code: {type: int, default: 0}
    command: "python train.py {alpha} {code}"
  echo:
    parameters:
      words: {type: string, default: "hello world"}
    command: "echo {words}"
"""


@pytest.fixture
def project(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed project at ``repo/proj``; runs are tracked in ``repo``."""
    monkeypatch.setenv("RUN_EXPECTED", "any")
    path = write_project(repo / "proj", MLPROJECT, **{"train.py": TRAIN})
    commit_all(repo, "project")
    return path


def test_a_local_run_records_params_source_status_and_output(
    project: Path, repo: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    done = projects.run(str(project), parameters={"alpha": "0.5"}, env_manager="local")
    assert (done.status, done.exit_code) == ("FINISHED", 0)
    assert done.command == "python train.py 0.5 0"
    client = Client()
    run = client.get_run(done.run_id)
    assert run.status == "FINISHED"
    assert run.params == {"alpha": "0.5", "code": "0"}
    assert run.metrics["alpha_seen"].value == 0.5  # the script logged to the same run
    assert run.tags["script"] == "train.py"
    head = git(repo, "rev-parse", "HEAD").strip()
    assert (run.source.commit, run.source.dirty, run.source.entry_point) == (head, False, "main")
    assert run.tags["mlflow.source.git.commit"] == head
    assert run.tags["mlflow.project.entryPoint"] == "main"
    assert run.tags["mlflow.project.env"] == "local"
    assert run.tags["mlflow.source.type"] == "PROJECT"
    assert run.tags["gitml.project.subdirectory"] == "proj"
    log = client.read_artifact(done.run_id, LOG_ARTIFACT).decode()
    assert "to stdout" in log and "to stderr" in log
    out, err = capfd.readouterr()  # and it streamed to the terminal
    assert "to stdout" in out and "to stderr" in err


def test_the_command_exit_status_sets_the_run_status(project: Path) -> None:
    done = projects.run(str(project), parameters={"alpha": "1", "code": "3"}, env_manager="local")
    assert (done.status, done.exit_code) == ("FAILED", 3)
    assert Client().get_run(done.run_id).status == "FAILED"


def test_the_script_attaches_to_exactly_the_created_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {r.id for r in Client().list_runs()[0]}
    done = projects.run(str(project), parameters={"alpha": "2"}, env_manager="local")
    after = {r.id for r in Client().list_runs()[0]}
    assert after - before == {done.run_id}


def test_cli_run_experiment_run_name_and_extra_params(project: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(project),
            "-e",
            "echo",
            "-P",
            "words=a b;c",
            "-P",
            "extra=1",
            "--env-manager",
            "local",
            "--experiment",
            "proj-exp",
            "--run-name",
            "first",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "a b;c --extra 1" in result.output
    client = Client()
    (run,) = client.list_runs()[0]
    assert (run.name, client.get_experiment(run.experiment_id).name) == ("first", "proj-exp")
    assert run.params == {"words": "a b;c", "extra": "1"}


def test_cli_run_failure_exits_with_the_command_status(project: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", str(project), "-P", "alpha=1", "-P", "code=4", "--env-manager", "local"]
    )
    assert result.exit_code == 4
    assert "FAILED (exit 4)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-P", "alpha=abc"], "is a float, but 'abc' is not a number"),
        ([], "needs a value for 'alpha'"),
        (["-e", "nope"], "entry point 'nope' is not in"),
        (["-P", "code=1.5", "-P", "alpha=1"], "is an int"),
        (["-P", "alpha"], "not KEY=VALUE"),
    ],
)
def test_bad_input_fails_before_a_run_exists(project: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["run", str(project), "--env-manager", "local", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert Client().list_runs()[0] == []


def test_dry_run_prints_the_resolved_command_and_creates_nothing(project: Path, repo: Path) -> None:
    refs_before = git(repo, "for-each-ref").splitlines()
    result = CliRunner().invoke(
        main, ["run", str(project), "-e", "echo", "-P", "words=it's", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "command:     echo 'it'\"'\"'s'" in result.output
    assert "entry point: echo" in result.output
    assert "local: this interpreter" in result.output
    assert "no run was created" in result.output
    as_json = CliRunner().invoke(
        main, ["run", str(project), "-P", "alpha=3", "--dry-run", "--json"]
    )
    described = json.loads(as_json.output)
    assert described["command"] == "python train.py 3 0"
    assert described["parameters"] == {"alpha": "3", "code": "0"}
    assert described["argv"] == ["bash", "-c", "python train.py 3 0"]
    assert git(repo, "for-each-ref").splitlines() == refs_before


def test_a_folder_without_mlproject_runs_its_py_file(repo: Path, tmp_path: Path) -> None:
    plain = write_project(tmp_path / "plain", None, **{"job.py": "import sys; print(sys.argv)\n"})
    done = projects.run(str(plain), "job.py", {"lr": "0.1"}, tracking_uri=str(repo))
    assert done.status == "FINISHED"
    assert done.command == "python job.py --lr 0.1"
    run = Client(str(repo)).get_run(done.run_id)
    assert run.source.commit is None  # the folder is in no repository
    assert run.tags["mlflow.project.env"] == "local"
    assert "'--lr', '0.1'" in Client(str(repo)).read_artifact(done.run_id, LOG_ARTIFACT).decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_command_and_marks_the_run_killed(repo: Path, signum: int) -> None:
    write_project(
        repo / "slow",
        """
        entry_points:
          main:
            command: "python -c 'import time; print(\\"READY\\", flush=True); time.sleep(60)'"
        """,
    )
    commit_all(repo, "slow")
    script = "import sys; from gitml.cli import main; main(sys.argv[1:])"
    proc = spawn(script, repo, "run", "slow", "--env-manager", "local", env=child_env())
    read_until(proc)
    proc.send_signal(signum)  # Ctrl-C at a terminal is SIGINT to gitml, not to the command
    code, _, err = finish(proc, timeout=30)
    assert code == 128 + signum, err
    assert "KILLED" in err
    (run,) = Client().list_runs()[0]
    assert run.status == "KILLED"
    assert "READY" in Client().read_artifact(run.id, LOG_ARTIFACT).decode()


# -- Git URLs ---------------------------------------------------------------------------


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """A bare repository over file:// with the project in ``sub/dir``: (url, v1 commit, v2)."""
    monkeypatch.setenv("RUN_EXPECTED", "any")
    upstream = tmp_path / "upstream"
    git(tmp_path, "init", "-q", "-b", "main", str(upstream))
    write_project(upstream / "sub" / "dir", MLPROJECT, **{"train.py": TRAIN})
    v1 = commit_all(upstream, "v1")
    git(upstream, "tag", "v1")
    (upstream / "sub" / "dir" / "train.py").write_text(TRAIN.replace("alpha_seen", "alpha_v2"))
    v2 = commit_all(upstream, "v2")
    url = bare_remote(upstream, tmp_path / "remote.git")
    return url, v1, v2


def test_a_git_url_runs_at_head_and_records_url_and_commit(
    repo: Path, remote: tuple[str, str, str]
) -> None:
    url, _, v2 = remote
    done = projects.run(f"{url}#sub/dir", parameters={"alpha": "1"}, env_manager="local")
    run = Client().get_run(done.run_id)
    assert done.status == "FINISHED"
    assert "alpha_v2" in run.metrics
    assert run.source.commit == v2
    assert run.tags["mlflow.source.git.repoURL"] == url
    assert run.tags["mlflow.source.git.commit"] == v2
    assert run.tags["mlflow.source.name"] == url
    assert run.tags["gitml.project.subdirectory"] == "sub/dir"
    assert git(repo, "cat-file", "-t", v2).strip() == "commit"  # the code came along


@pytest.mark.parametrize("version", ["v1", "main~1", "short"])
def test_a_git_url_at_a_version(repo: Path, remote: tuple[str, str, str], version: str) -> None:
    url, v1, _ = remote
    wanted = v1[:10] if version == "short" else version
    done = projects.run(
        f"{url}#sub/dir", parameters={"alpha": "1"}, env_manager="local", version=wanted
    )
    run = Client().get_run(done.run_id)
    assert run.source.commit == v1
    assert "alpha_seen" in run.metrics
    assert run.tags["gitml.project.version"] == wanted


def test_the_clone_is_cached_and_fetched_again(
    repo: Path, remote: tuple[str, str, str], tmp_path: Path
) -> None:
    url, _, _ = remote
    first = projects.run(f"{url}#sub/dir", "echo", env_manager="local")
    upstream = tmp_path / "upstream"
    (upstream / "sub" / "dir" / "new.txt").write_text("x\n")
    v3 = commit_all(upstream, "v3")
    git(upstream, "push", "-q", url, "main")
    second = projects.run(f"{url}#sub/dir", "echo", env_manager="local")
    client = Client()
    assert client.get_run(second.run_id).source.commit == v3
    assert client.get_run(first.run_id).source.commit != v3
    repos = list((Path.home() / ".cache" / "gitml" / "repos").iterdir())
    assert len([p for p in repos if p.is_dir()]) == 1


@pytest.mark.parametrize(
    ("uri", "version", "error", "message"),
    [
        ("{url}#sub/dir", "no-such-tag", NotFound, "'no-such-tag' is not a branch, tag or commit"),
        ("{url}#sub/missing", None, NotFound, "subdirectory 'sub/missing' does not exist"),
        ("{url}#../x", None, InvalidInput, "must be a relative path"),
        ("file:///no/such/repo.git", None, NotFound, "cannot clone"),
        ("no/such/folder", None, NotFound, "neither a folder nor a Git URL"),
    ],
)
def test_git_url_errors(
    repo: Path,
    remote: tuple[str, str, str],
    uri: str,
    version: str | None,
    error: type[GitmlError],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        projects.run(uri.format(url=remote[0]), "echo", env_manager="local", version=version)
    assert Client().list_runs()[0] == []


def test_a_local_folder_at_a_version_runs_that_commit(project: Path, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    (project / "train.py").write_text(TRAIN.replace("alpha_seen", "changed"))
    commit_all(repo, "changed")
    done = projects.run(str(project), parameters={"alpha": "1"}, env_manager="local", version=first)
    run = Client().get_run(done.run_id)
    assert run.source.commit == first and "alpha_seen" in run.metrics


def test_version_needs_a_git_project(repo: Path, tmp_path: Path) -> None:
    plain = write_project(tmp_path / "plain", None, **{"job.py": ""})
    with pytest.raises(InvalidInput, match="not in a Git repository"):
        projects.run(str(plain), "job.py", version="main")


# -- reproduce --------------------------------------------------------------------------


def test_reproduce_runs_the_exact_dirty_code_again(project: Path, repo: Path) -> None:
    (project / "train.py").write_text(TRAIN.replace("alpha_seen", "dirty_metric"))  # uncommitted
    original = projects.run(str(project), parameters={"alpha": "0.25"}, env_manager="local")
    (project / "train.py").write_text(TRAIN.replace("alpha_seen", "later_edit"))
    again = projects.reproduce(original.run_id)
    client = Client()
    first, second = client.get_run(original.run_id), client.get_run(again.run_id)
    assert first.source.dirty and first.source.snapshot is not None
    assert (second.source.commit, second.source.snapshot) == (
        first.source.commit,
        first.source.snapshot,
    )
    assert second.metrics["dirty_metric"].value == 0.25  # the snapshot's code, not today's
    assert "later_edit" not in second.metrics
    assert second.params == first.params
    assert second.tags["gitml.reproduces"] == original.run_id
    assert second.tags["mlflow.source.name"] == first.tags["mlflow.source.name"]
    assert second.experiment_id == first.experiment_id


def test_reproduce_with_overrides_from_the_cli(project: Path) -> None:
    original = projects.run(str(project), parameters={"alpha": "1"}, env_manager="local")
    result = CliRunner().invoke(main, ["runs", "reproduce", original.run_id[:8], "-P", "alpha=7"])
    assert result.exit_code == 0, result.output
    client = Client()
    (new,) = [r for r in client.list_runs()[0] if r.id != original.run_id]
    assert new.params == {"alpha": "7", "code": "0"}
    assert new.metrics["alpha_seen"].value == 7.0
    assert new.tags["gitml.reproduces"] == original.run_id


def test_reproduce_a_git_url_run(repo: Path, remote: tuple[str, str, str]) -> None:
    url, v1, _ = remote
    original = projects.run(
        f"{url}#sub/dir", parameters={"alpha": "1"}, env_manager="local", version="v1"
    )
    again = projects.reproduce(original.run_id)
    run = Client().get_run(again.run_id)
    assert run.source.commit == v1 and "alpha_seen" in run.metrics
    assert run.tags["mlflow.source.git.repoURL"] == url


def test_only_project_runs_can_be_reproduced(repo: Path) -> None:
    client = Client()
    plain = client.create_run(None)
    with pytest.raises(InvalidInput, match="not started by 'gitml run'"):
        projects.reproduce(plain.id)


def test_the_python_api_is_exported() -> None:
    assert {"run", "plan", "reproduce", "load_project", "MLproject"} <= set(projects.__all__)
    assert sys.modules["gitml.projects"].run is projects.run


def test_untracked_project_files_are_in_the_snapshot_and_reproduce_runs_them(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_EXPECTED", "any")
    write_project(repo / "fresh", MLPROJECT, **{"train.py": TRAIN})  # never added to Git
    result = CliRunner().invoke(main, ["run", "fresh", "-P", "alpha=1", "--env-manager", "local"])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output
    (run,) = Client().list_runs()[0]
    assert run.source.dirty and run.source.omitted == []
    again = projects.reproduce(run.id)
    assert again.status == "FINISHED"


def test_a_gitml_server_as_tracking_uri_is_refused_up_front(project: Path) -> None:
    with pytest.raises(InvalidInput, match="not supported by 'gitml run' yet"):
        projects.run(str(project), parameters={"alpha": "1"}, tracking_uri="http://127.0.0.1:1")


def test_path_and_uri_parameters_in_a_real_run(repo: Path, tmp_path: Path) -> None:
    write_project(
        repo / "typed",
        """
        entry_points:
          main:
            parameters:
              data: path
              source: uri
              n: {type: int, default: 2}
              ratio: {type: float, default: 0.5}
            command: "head -n {n} {data} && echo {source} {ratio}"
        """,
    )
    commit_all(repo, "typed")
    (tmp_path / "my data.txt").write_text("1\n2\n3\n")
    data = str(tmp_path / "my data.txt")
    done = projects.run("typed", parameters={"data": data, "source": "s3://b/k?x=1&y=2"})
    assert done.command == f"head -n 2 '{data}' && echo 's3://b/k?x=1&y=2' 0.5"
    assert Client().read_artifact(done.run_id, LOG_ARTIFACT) == b"1\n2\ns3://b/k?x=1&y=2 0.5\n"


QUOTED = """
name: quoted
entry_points:
  main:
    parameters:
      msg: string
    command: "python echo.py '--msg={msg}' \\"{msg}\\""
"""
ECHO = "import json, sys\nopen('got.json', 'w').write(json.dumps(sys.argv[1:]))\n"


def test_a_quoted_placeholder_passes_crafted_values_verbatim(repo: Path) -> None:
    path = write_project(repo / "quoted", QUOTED, **{"echo.py": ECHO})
    commit_all(repo, "project")
    marker = repo / "ran"
    for payload in (f"'; touch {marker}; '", f'"; touch {marker}; "', f"$(touch {marker})"):
        done = projects.run(str(path), parameters={"msg": payload}, env_manager="local")
        assert (done.status, marker.exists()) == ("FINISHED", False), done.command
        got = json.loads((path / "got.json").read_text())
        assert got == [f"--msg={payload}", payload]
        assert Client().get_run(done.run_id).params == {"msg": payload}

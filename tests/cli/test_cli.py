"""The ``gitml`` command: in-process through click's runner, and a few real processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

import gitml
from gitml._version import __version__
from testing.cli import cli, gitml_exe, one_error_line
from testing.git import commit_file_on_ref, git, init_repo
from testing.procs import child_env

RUNS = "refs/gitml/runs/"


def ids_sharing_a_prefix(client: gitml.Client) -> tuple[str, str]:
    """Create runs until two ids share their first hex digit (17 at most)."""
    seen: dict[str, str] = {}
    while True:
        run = client.create_run()
        if run.id[0] in seen:
            return seen[run.id[0]], run.id
        seen[run.id[0]] = run.id


# -- version and init ----------------------------------------------------------------


def test_version() -> None:
    result = cli("--version")
    assert __version__ in result.output
    assert result.output.startswith("gitml")


def test_init_creates_repository_and_config(tmp_path: Path) -> None:
    target = tmp_path / "project"
    result = cli("init", str(target), "--experiment", "churn", "--flush-interval", "2")
    assert (target / ".git").is_dir()
    assert "Initialized an empty Git repository" in result.output
    config = yaml.safe_load((target / ".gitml.yaml").read_text())
    assert config["experiment"] == "churn"
    assert config["flush_interval"] == 2.0

    again = cli("init", str(target), ok=False)
    line = one_error_line(again)
    assert ".gitml.yaml" in line and "--force" in line
    assert yaml.safe_load((target / ".gitml.yaml").read_text())["experiment"] == "churn"

    forced = cli("init", str(target), "--force")
    assert "Initialized" not in forced.output
    assert yaml.safe_load((target / ".gitml.yaml").read_text())["experiment"] == "Default"


def test_init_in_an_existing_repository(repo: Path) -> None:
    result = cli("init")
    assert "Initialized" not in result.output
    assert (repo / ".gitml.yaml").is_file()
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_init_rejects_invalid_settings(tmp_path: Path) -> None:
    target = tmp_path / "project"
    line = one_error_line(cli("init", str(target), "--flush-interval", "0", ok=False))
    assert "flush_interval" in line
    assert not (target / ".gitml.yaml").exists()
    line = one_error_line(cli("init", str(target), "--artifact-threshold", "-1", ok=False))
    assert "artifact_threshold" in line


def test_runs_go_to_the_initialized_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = init_repo(tmp_path / "project")
    cli("init", str(target), "--experiment", "churn")
    monkeypatch.chdir(target)
    client = gitml.Client()
    run = client.create_run()
    exp = client.get_experiment_by_name("churn")
    assert exp is not None and run.experiment_id == exp.id


# -- runs ------------------------------------------------------------------------------


@pytest.fixture
def two_runs(repo: Path) -> tuple[str, str]:
    client = gitml.Client()
    first = client.create_run("churn", run_name="first", start_time=1_700_000_000_000)
    client.log_batch(
        first.id,
        metrics=[gitml.Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(5)],
        params={"lr": "0.1"},
    )
    client.set_terminated(first.id)
    second = client.create_run(run_name="second", start_time=1_700_000_001_000)
    client.log_text(second.id, "hello", "notes/hello.txt")
    client.log_dict(second.id, {"classes": [0, 1]}, "labels.json")
    return first.id, second.id


def test_runs_list(two_runs: tuple[str, str]) -> None:
    first, second = two_runs
    out = cli("runs", "list").stdout.splitlines()
    assert out[0].split() == ["RUN", "ID", "NAME", "STATUS", "EXPERIMENT", "START", "metrics.loss"]
    assert out[1].startswith(second[:12]) and "second" in out[1] and "RUNNING" in out[1]
    assert out[2].startswith(first[:12]) and "churn" in out[2] and out[2].endswith("  0.2")
    assert "2023-11-14 22:13:20" in out[2]

    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [second, first]
    assert listed[1]["params"] == {"lr": "0.1"}
    assert listed[1]["status"] == "FINISHED"

    only = json.loads(cli("runs", "list", "--experiment", "churn", "--json").stdout)
    assert [r["id"] for r in only] == [first]
    exp_id = only[0]["experiment_id"]
    by_id = json.loads(cli("runs", "list", "-e", exp_id, "--json").stdout)
    assert [r["id"] for r in by_id] == [first]


def test_runs_show_by_prefix(two_runs: tuple[str, str]) -> None:
    first, _ = two_runs
    shown = cli("runs", "show", first[:7]).stdout.splitlines()
    assert shown[0].split() == ["run", first]
    assert shown[shown.index("Params") + 1].split() == ["lr", "0.1"]
    as_json = json.loads(cli("runs", "show", first[:7], "--json").stdout)
    assert as_json["metrics"]["loss"] == {"value": 0.2, "step": 4, "timestamp": 1_700_000_000_004}


def test_unknown_and_ambiguous_prefixes(repo: Path) -> None:
    a, b = ids_sharing_a_prefix(gitml.Client())
    result = cli("runs", "show", a[0], ok=False)
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: run id prefix '{a[0]}' is ambiguous; 2 runs match:"
    assert [ln.split()[0] for ln in lines[1:3]] == sorted([a, b])
    assert lines[3] == "Give more characters of the id."
    line = one_error_line(cli("runs", "show", "zzzz", ok=False))
    assert "no run" in line and "zzzz" in line
    one_error_line(cli("runs", "delete", "zzzz", ok=False))
    one_error_line(cli("artifacts", "list", "zzzz", ok=False))


def test_runs_metric(two_runs: tuple[str, str]) -> None:
    first, _ = two_runs
    lines = cli("runs", "metric", first[:10], "loss").stdout.splitlines()
    assert lines[0] == "0\t2023-11-14 22:13:20.000 UTC\t1.0"
    assert lines[4] == "4\t2023-11-14 22:13:20.004 UTC\t0.2"
    assert len(lines) == 5
    points = json.loads(cli("runs", "metric", first[:10], "loss", "--json").stdout)
    assert [p["step"] for p in points] == [0, 1, 2, 3, 4]
    assert points[1]["value"] == 0.5
    line = one_error_line(cli("runs", "metric", first, "nope", ok=False))
    assert "nope" in line


def test_runs_code(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('dirty')\n")
    run = gitml.Client().create_run()
    result = cli("runs", "code", run.id[:8], "--into", str(tmp_path / "code"))
    assert "Wrote 1 files" in result.stdout
    assert (tmp_path / "code" / "train.py").read_text() == "print('dirty')\n"
    line = one_error_line(cli("runs", "code", run.id, "--into", str(tmp_path / "code"), ok=False))
    assert "not empty" in line


def test_runs_delete_and_restore(two_runs: tuple[str, str]) -> None:
    first, second = two_runs
    assert f"Deleted run {first}" in cli("runs", "delete", first[:9]).stdout
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [second]
    every = json.loads(cli("runs", "list", "--all", "--json").stdout)
    assert {r["id"]: r["lifecycle_stage"] for r in every} == {
        first: "deleted",
        second: "active",
    }
    assert f"Restored run {first}" in cli("runs", "restore", first[:9]).stdout
    assert len(json.loads(cli("runs", "list", "--json").stdout)) == 2


def test_runs_list_reports_malformed_records(repo: Path, two_runs: tuple[str, str]) -> None:
    first, second = two_runs
    ref = RUNS + first
    tree = git(repo, "rev-parse", f"{ref}^{{tree}}").strip()
    bad = git(repo, "commit-tree", tree, "-p", ref, "-m", "noop").strip()
    # Point the ref at a commit whose run.yaml is not even YAML.
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=repo,
        input="id: [\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    new_tree = subprocess.run(
        ["git", "mktree"],
        cwd=repo,
        input=f"100644 blob {blob}\trun.yaml\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    bad = git(repo, "commit-tree", new_tree, "-p", bad, "-m", "broken").strip()
    git(repo, "update-ref", ref, bad)
    result = cli("runs", "list", "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == [second]
    assert ref in result.stderr and "run.yaml" in result.stderr
    assert result.stderr.startswith("warning:")


def test_runs_recover_with_nothing_to_do(repo: Path) -> None:
    assert cli("runs", "recover").stdout.strip() == "Nothing to recover."


def test_runs_with_tracking_uri_option(repo: Path, tmp_path: Path) -> None:
    bare = init_repo(tmp_path / "records.git", bare=True)
    run = gitml.Client(tracking_uri=str(bare)).create_run()
    assert json.loads(cli("runs", "list", "--json").stdout) == []
    listed = json.loads(cli("runs", "list", "--json", "--tracking-uri", str(bare)).stdout)
    assert [r["id"] for r in listed] == [run.id]


# -- artifacts ---------------------------------------------------------------------------


def test_artifacts_list_and_get(two_runs: tuple[str, str], tmp_path: Path) -> None:
    _, second = two_runs
    table = cli("artifacts", "list", second[:8]).stdout.splitlines()
    assert table[0].split() == ["PATH", "SIZE", "SHA256", "STORAGE"]
    assert [row.split()[0] for row in table[1:]] == ["labels.json", "notes/hello.txt"]
    listed = json.loads(cli("artifacts", "list", second[:8], "--json").stdout)
    assert listed[1] == {
        "path": "notes/hello.txt",
        "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "size": 5,
        "storage": "git",
    }

    out = tmp_path / "got" / "hello.txt"
    result = cli("artifacts", "get", second[:8], "notes/hello.txt", "--out", str(out))
    assert out.read_bytes() == b"hello"
    assert "Wrote 5 bytes" in result.stderr
    to_stdout = cli("artifacts", "get", second, "labels.json", "--out", "-")
    assert json.loads(to_stdout.stdout) == {"classes": [0, 1]}
    line = one_error_line(cli("artifacts", "get", second, "missing.txt", ok=False))
    assert "missing.txt" in line
    one_error_line(cli("artifacts", "get", second, "../etc/passwd", ok=False))


def test_artifacts_get_default_out_is_the_name(
    two_runs: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, second = two_runs
    client = gitml.Client()
    where = tmp_path / "elsewhere"
    where.mkdir()
    monkeypatch.setenv("GITML_TRACKING_URI", str(client.store.root))
    monkeypatch.chdir(where)
    cli("artifacts", "get", second, "notes/hello.txt")
    assert (where / "hello.txt").read_bytes() == b"hello"


def test_artifacts_get_without_a_path_writes_every_artifact_and_a_folder_below_out(
    two_runs: tuple[str, str], tmp_path: Path
) -> None:
    _, second = two_runs
    result = cli("artifacts", "get", second, "--out", str(tmp_path / "all"))
    assert "Wrote 2 files to" in result.stderr
    assert (tmp_path / "all" / "notes" / "hello.txt").read_bytes() == b"hello"
    assert json.loads((tmp_path / "all" / "labels.json").read_text()) == {"classes": [0, 1]}
    cli("artifacts", "get", second, "notes", "--out", str(tmp_path / "folder"))
    folder = tmp_path / "folder"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "notes",
        "notes/hello.txt",
    ]
    line = one_error_line(cli("artifacts", "get", second, "notes", "--out", "-", ok=False))
    assert "'notes' is a folder" in line


# -- experiments -------------------------------------------------------------------------


def test_experiments_create_and_list(repo: Path) -> None:
    created = cli("experiments", "create", "churn").stdout
    assert "Created experiment 'churn'" in created
    exp_id = created.strip().rsplit(" ", 1)[-1]
    line = one_error_line(cli("experiments", "create", "churn", ok=False))
    assert "churn" in line and "exists" in line
    rows = cli("experiments", "list").stdout.splitlines()
    assert rows[0].split() == ["ID", "NAME", "STAGE", "RUNS", "DELETED"]
    assert rows[1].split() == [exp_id, "churn", "active", "0", "0"]
    listed = json.loads(cli("experiments", "list", "--json").stdout)
    assert [(e["id"], e["name"]) for e in listed] == [(exp_id, "churn")]
    assert listed[0]["runs"] == {"active": 0, "deleted": 0}


def test_experiments_rename_delete_and_restore(repo: Path) -> None:
    exp_id = gitml.Client().create_experiment("churn")
    run_id = gitml.Client().create_run("churn").id
    assert cli("experiments", "rename", "churn", "attrition").stdout == (
        f"Renamed experiment {exp_id} to 'attrition'\n"
    )
    cli("experiments", "delete", "attrition")
    rows = cli("experiments", "list").stdout.splitlines()
    assert rows[1].split() == [exp_id, "attrition", "deleted", "0", "1"]
    line = one_error_line(cli("experiments", "delete", exp_id, ok=False))
    assert "is not active" in line
    cli("experiments", "restore", exp_id)
    assert gitml.Client().get_run(run_id).lifecycle_stage == "active"


# -- validate ----------------------------------------------------------------------------


def test_validate_files(repo: Path, tmp_path: Path) -> None:
    run = gitml.Client().create_run(commit=True)
    good = tmp_path / "good" / "run.yaml"
    good.parent.mkdir()
    good.write_text(git(repo, "show", f"{RUNS}{run.id}:run.yaml"))
    assert cli("validate", str(good)).output == ""

    record = yaml.safe_load(good.read_text())
    record["status"] = "EXPLODED"
    bad = tmp_path / "bad" / "run.yaml"
    bad.parent.mkdir()
    bad.write_text(yaml.safe_dump(record))
    config = tmp_path / "cfg" / ".gitml.yaml"
    config.parent.mkdir()
    config.write_text("flush_interval: 0\n")
    other = tmp_path / "notes.txt"
    other.write_text("not a record")

    result = cli("validate", str(good), str(bad), str(config), str(other), ok=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert str(bad) in lines[0] and "'status'" in lines[0] and "EXPLODED" in lines[0]
    assert str(config) in lines[1] and "'flush_interval'" in lines[1]

    broken = tmp_path / "broken" / "experiment.yaml"
    broken.parent.mkdir()
    broken.write_text("name: [unclosed\n")
    result = cli("validate", str(broken), ok=False)
    assert result.exit_code == 1
    assert str(broken) in result.stderr and "YAML" in result.stderr


def test_validate_refs(repo: Path, two_runs: tuple[str, str]) -> None:
    first, _ = two_runs
    assert cli("validate", "--refs").output == ""
    ref = RUNS + first
    record = yaml.safe_load(git(repo, "show", f"{ref}:run.yaml"))
    del record["user"]
    commit_file_on_ref(repo, ref, "run.yaml", yaml.safe_dump(record))
    result = cli("validate", "--refs", ok=False)
    assert result.exit_code == 1
    assert f"{ref}:run.yaml" in result.stderr and "user" in result.stderr


def test_validate_refs_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(cli("validate", "--refs", ok=False))
    assert "git init" in line


# -- errors ------------------------------------------------------------------------------


def test_outside_a_repository_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(cli("runs", "list", ok=False))
    assert "git init" in line


def test_internal_error_exits_3(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: gitml.Client, problems: object = None) -> list[gitml.Experiment]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gitml.Client, "list_experiments", broken)
    result = cli("experiments", "list", ok=False)
    assert result.exit_code == 3
    assert "internal error: RuntimeError: disk on fire" in result.stderr
    assert "--traceback" in result.stderr
    assert "Traceback" not in result.output

    shown = cli("--traceback", "experiments", "list", ok=False)
    assert isinstance(shown.exception, RuntimeError)


def test_traceback_flag_shows_user_errors_too(repo: Path) -> None:
    result = cli("--traceback", "runs", "show", "zzzz", ok=False)
    assert isinstance(result.exception, gitml.NotFound)


def test_usage_errors_are_click_errors(repo: Path) -> None:
    result = cli("runs", "show", ok=False)
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


# -- the installed executable ---------------------------------------------------------


def _exe_ok(cwd: Path, *args: str) -> str:
    done = gitml_exe(cwd, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_executable_end_to_end(repo: Path, tmp_path: Path) -> None:
    assert __version__ in _exe_ok(repo, "--version")
    client = gitml.Client()
    run = client.create_run(run_name="exe")
    client.log_batch(run.id, metrics=[gitml.Metric("loss", 0.5, 1, 0)])
    client.log_text(run.id, "bytes", "a.txt")
    listed = json.loads(_exe_ok(repo, "runs", "list", "--json"))
    assert [r["id"] for r in listed] == [run.id]
    assert _exe_ok(repo, "runs", "show", run.id[:6]).splitlines()[1].split() == ["name", "exe"]
    assert _exe_ok(repo, "artifacts", "get", run.id[:6], "a.txt", "--out", "-") == "bytes"

    done = gitml_exe(repo, "runs", "show", "zzzz")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: no run with id 'zzzz'"]

    outside = tmp_path / "outside"
    outside.mkdir()
    done = gitml_exe(outside, "runs", "list")
    assert done.returncode == 1 and done.stderr.startswith("error: ")


def test_executable_pipe_closed_early(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_batch(run.id, metrics=[gitml.Metric("m", float(i), i, i) for i in range(1000)])
    done = subprocess.run(
        f"gitml runs metric {run.id} m | head -1",
        shell=True,
        cwd=repo,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "0\t1970-01-01 00:00:00.000 UTC\t0.0\n"
    assert "Traceback" not in done.stderr

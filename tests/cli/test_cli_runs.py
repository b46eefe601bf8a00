"""``gitml runs`` search, list, show, diff, metric and tag, on real repositories."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import gitml
import gitml.sklearn
from testing.cli import cli, gitml_exe, one_error_line
from testing.git import commit_file_on_ref, git
from testing.models import iris_classifier

T0 = 1_700_000_000_000
RUNS = "refs/gitml/runs/"


@pytest.fixture
def runs(repo: Path) -> dict[str, str]:
    """Five runs in two experiments: name -> id. ``b`` is a child of ``a``; ``e`` deleted."""
    client = gitml.Client()
    specs = [
        ("a", "churn", 0.9, {"alpha": "0.1", "model": "tree"}, {"team": "growth"}),
        ("b", "churn", 0.5, {"alpha": "0.5", "model": "tree"}, {"team": "core"}),
        ("c", "churn", 0.7, {"alpha": "0.9", "model": "linear"}, {}),
        ("d", "fraud", 0.2, {"alpha": "0.1"}, {"team": "growth"}),
        ("e", "fraud", 0.1, {"alpha": "0.3"}, {}),
    ]
    ids: dict[str, str] = {}
    for i, (name, experiment, rmse, params, tags) in enumerate(specs):
        run = client.create_run(
            experiment,
            run_name=name,
            start_time=T0 + i * 1000,
            parent_run_id=ids["a"] if name == "b" else None,
        )
        client.log_batch(
            run.id,
            metrics=[gitml.Metric("rmse", rmse, T0, 0), gitml.Metric("mae", rmse / 2, T0, 0)],
            params=params,
            tags=tags,
        )
        ids[name] = run.id
    client.set_terminated(ids["a"], end_time=T0 + 5000)
    client.delete_run(ids["e"])
    return ids


def names(result_stdout: str) -> list[str]:
    return [r["name"] for r in json.loads(result_stdout)]


# -- search and list ------------------------------------------------------------------


def test_list_is_newest_first_and_hides_deleted(runs: dict[str, str]) -> None:
    assert names(cli("runs", "list", "--json").stdout) == ["d", "c", "b", "a"]
    assert names(cli("runs", "list", "--all", "--json").stdout) == ["e", "d", "c", "b", "a"]
    assert names(cli("runs", "list", "--deleted", "--json").stdout) == ["e"]
    assert names(cli("runs", "search", "--deleted", "--json").stdout) == ["e"]


def test_search_filter_order_and_experiments(runs: dict[str, str]) -> None:
    found = cli("runs", "search", "metrics.rmse < 0.8", "--order-by", "metrics.rmse", "--json")
    assert names(found.stdout) == ["d", "b", "c"]
    both = cli(
        "runs",
        "search",
        "params.alpha = '0.1' OR tags.team = 'core'",
        "-e",
        "churn",
        "--order-by",
        "params.alpha DESC",
        "--json",
    )
    assert names(both.stdout) == ["b", "a"]
    churn = json.loads(cli("runs", "list", "--json", "-e", "churn").stdout)
    exp_id = churn[0]["experiment_id"]
    several = cli("runs", "list", "-e", exp_id, "-e", "fraud", "--json")
    assert names(several.stdout) == ["d", "c", "b", "a"]
    tied = cli("runs", "list", "--order-by", "params.model", "--order-by", "metrics.rmse", "--json")
    assert names(tied.stdout) == ["c", "b", "a", "d"]  # runs without the param sort last


def test_search_max_notes_that_more_match(runs: dict[str, str]) -> None:
    result = cli("runs", "list", "--max", "2", "--json")
    assert names(result.stdout) == ["d", "c"]
    assert "more runs match" in result.stderr and "--max" in result.stderr
    every = cli("runs", "list", "--max", "0", "--json")
    assert names(every.stdout) == ["d", "c", "b", "a"] and every.stderr == ""
    exact = cli("runs", "list", "--max", "4", "--json")
    assert exact.stderr == ""


def test_search_table_shows_the_metrics_asked_about(runs: dict[str, str]) -> None:
    out = cli("runs", "search", "metrics.mae > 0.2", "--order-by", "metrics.mae DESC").stdout
    lines = out.splitlines()
    assert lines[0].split() == [
        "RUN", "ID", "NAME", "STATUS", "EXPERIMENT", "START", "metrics.mae", "metrics.rmse",
    ]  # fmt: skip
    assert lines[1].split() == [
        runs["a"][:12], "a", "FINISHED", "churn", "2023-11-14", "22:13:20", "0.45", "0.9",
    ]  # fmt: skip
    assert [ln.split()[1] for ln in lines[1:]] == ["a", "c", "b"]


def test_search_columns(runs: dict[str, str]) -> None:
    out = cli("runs", "search", "tags.team = 'growth'", "--columns", "params.alpha,tags.team,user")
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "params.alpha", "tags.team", "USER"]
    assert lines[1].split()[:3] == [runs["d"][:12], "0.1", "growth"]
    rows = json.loads(
        cli("runs", "list", "--max", "2", "--json", "--columns", "metrics.rmse,start_time").stdout
    )
    assert rows == [
        {"run_id": runs["d"], "metrics.rmse": 0.2, "start_time": T0 + 3000},
        {"run_id": runs["c"], "metrics.rmse": 0.7, "start_time": T0 + 2000},
    ]
    line = one_error_line(cli("runs", "list", "--columns", "colour", ok=False))
    assert "unknown column 'colour'" in line


def test_search_csv(runs: dict[str, str]) -> None:
    out = cli("runs", "search", "params.model = 'tree'", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["run_id"] for r in rows] == [runs["b"], runs["a"]]
    assert rows[1]["metrics.rmse"] == "0.9" and rows[1]["params.alpha"] == "0.1"
    assert rows[1]["end_time"] == "2023-11-14T22:13:25.000+00:00" and rows[0]["end_time"] == ""
    assert rows[0]["tags.mlflow.parentRunId"] == runs["a"]
    assert rows[0]["tags.mlflow.runName"] == "b"
    chosen = cli("runs", "list", "--csv", "--columns", "name,metrics.rmse", "--max", "1").stdout
    assert chosen.splitlines() == ["run_id,run_name,metrics.rmse", f"{runs['d']},d,0.2"]


def test_search_with_nothing_found(runs: dict[str, str]) -> None:
    result = cli("runs", "search", "metrics.rmse > 100")
    assert result.stdout == "" and result.stderr == "No runs match.\n"
    assert json.loads(cli("runs", "search", "metrics.rmse > 100", "--json").stdout) == []
    assert cli("runs", "search", "metrics.rmse > 100", "--csv").stdout.startswith("run_id,")


def test_bad_filter_is_shown_with_a_caret(runs: dict[str, str]) -> None:
    result = cli("runs", "search", "metrics.rmse <", ok=False)
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ")
    assert any("metrics.rmse <" in ln for ln in lines[1:])
    assert any(ln.strip() == "^" for ln in lines[1:])


def test_search_usage_errors(runs: dict[str, str]) -> None:
    for args in (["--all", "--deleted"], ["--json", "--csv"], ["--max", "-1"]):
        result = cli("runs", "list", *args, ok=False)
        assert result.exit_code == 2, args
    line = one_error_line(cli("runs", "list", "-e", "nope", ok=False))
    assert "nope" in line


def test_malformed_records_are_warnings(repo: Path, runs: dict[str, str]) -> None:
    tip = git(repo, "rev-parse", RUNS + runs["a"]).strip()
    git(repo, "update-ref", RUNS + "f" * 32, tip)  # a record under another run's name
    result = cli("runs", "list", "--json")
    assert names(result.stdout) == ["d", "c", "b", "a"]
    assert result.stderr.startswith("warning: skipped malformed record")
    assert RUNS + "f" * 32 in result.stderr


def test_list_sees_runs_written_since_the_last_query(runs: dict[str, str]) -> None:
    assert len(json.loads(cli("runs", "list", "--json").stdout)) == 4
    gitml.Client().create_run("churn", run_name="late", start_time=T0 + 99_000)
    assert names(cli("runs", "list", "--json").stdout)[0] == "late"


# -- show ---------------------------------------------------------------------------------


def test_show_everything_about_a_run(repo: Path, runs: dict[str, str]) -> None:
    client = gitml.Client()
    client.log_text(runs["a"], "hello", "notes/hello.txt")
    out = cli("runs", "show", runs["a"][:8]).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["run", runs["a"]]
    assert lines[1].split() == ["name", "a"]
    assert "churn (" in lines[2]
    assert "end" in out and "(5.0s)" in out
    assert f"commit      {git(repo, 'rev-parse', 'HEAD').strip()} on main" in out
    assert lines[lines.index("Params") + 1].split() == ["alpha", "0.1"]
    assert lines[lines.index("Metrics (latest)") + 2].split() == ["rmse", "0.9", "(step", "0)"]
    assert lines[lines.index("Tags") + 1].split() == ["team", "growth"]
    assert lines[lines.index("Artifacts") + 1].split() == ["notes/hello.txt", "5", "B"]
    assert lines[lines.index("Child runs (1)") + 1].split() == [runs["b"], "b", "RUNNING"]

    child = cli("runs", "show", runs["b"]).stdout
    assert f"parent      {runs['a']}  a" in child
    assert "Artifacts: none" in child and "Child runs" not in child

    deleted = cli("runs", "show", runs["e"]).stdout
    assert "(deleted)" in deleted.splitlines()[3]


def test_show_json(runs: dict[str, str]) -> None:
    shown = json.loads(cli("runs", "show", runs["a"][:8], "--json").stdout)
    assert shown["id"] == runs["a"] and shown["params"]["alpha"] == "0.1"
    assert shown["experiment_name"] == "churn"
    assert shown["children"] == [
        {"id": runs["b"], "name": "b", "status": "RUNNING", "lifecycle_stage": "active"}
    ]
    assert shown["parent"] is None and shown["artifacts"] == []
    child = json.loads(cli("runs", "show", runs["b"], "--json").stdout)
    assert child["parent"]["id"] == runs["a"]


def test_show_a_dirty_run(repo: Path) -> None:
    (repo / "train.py").write_text("print('dirty')\n")
    run = gitml.Client().create_run(run_name="dirty")
    out = cli("runs", "show", run.id).stdout
    assert f"snapshot    {run.source.snapshot}  (the work tree had changes)" in out


# -- diff ---------------------------------------------------------------------------------


def test_diff_params_metrics_and_code(repo: Path, runs: dict[str, str]) -> None:
    (repo / "train.py").write_text("print('training')\nprint('tuned')\n")
    (repo / "weights.bin").write_bytes(b"\0\1")
    git(repo, "add", "weights.bin")
    git(repo, "commit", "-q", "-am", "tune")
    client = gitml.Client()
    new = client.create_run("churn", run_name="tuned")
    client.log_batch(
        new.id, metrics=[gitml.Metric("rmse", 0.45, T0, 0)], params={"alpha": "0.1", "seed": "7"}
    )
    out = cli("runs", "diff", runs["a"][:8], new.id[:8]).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["a", runs["a"], "a", "FINISHED"]
    assert lines[1].split() == ["b", new.id, "tuned", "RUNNING"]
    assert "Params (2 differ, 1 the same)" in lines
    assert "  model  tree -> (none)" in lines
    assert "  seed   (none) -> 7" in lines
    assert "  mae   0.45 -> (none)" in lines
    assert "  rmse  0.9 -> 0.45  (-0.45, -50.0%)" in lines
    assert "  team  growth -> (none)" in lines
    code = lines[lines.index(next(ln for ln in lines if ln.startswith("Code"))) :]
    before = gitml.Client().get_run(runs["a"]).source.commit
    head = git(repo, "rev-parse", "HEAD").strip()
    assert before is not None and before != head
    assert code[0] == f"Code  {before[:12]} -> {head[:12]}"
    assert code[1:] == [
        " train.py    | 1 +",
        " weights.bin | Bin 0 -> 2 bytes",
        " 2 files changed, 1 insertion(+)",
    ]


def test_diff_json_and_same_code(runs: dict[str, str]) -> None:
    data = json.loads(cli("runs", "diff", runs["a"], runs["c"], "--json").stdout)
    assert data["a"]["id"] == runs["a"] and data["b"]["id"] == runs["c"]
    assert {p["key"]: (p["a"], p["b"]) for p in data["params"]} == {
        "alpha": ("0.1", "0.9"),
        "model": ("tree", "linear"),
    }
    rmse = next(m for m in data["metrics"] if m["key"] == "rmse")
    assert rmse["status"] == "changed" and rmse["delta"] == pytest.approx(-0.2)
    assert data["code"]["files"] == [] and data["code"]["a"] == data["code"]["b"]
    assert "the same" in cli("runs", "diff", runs["a"], runs["c"]).stdout.splitlines()[-1]


def test_diff_bad_ids(runs: dict[str, str]) -> None:
    line = one_error_line(cli("runs", "diff", runs["a"], "zzzz", ok=False))
    assert "no run with id 'zzzz'" in line


# -- metric and tag ---------------------------------------------------------------------------


def test_metric_history_formats(repo: Path) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_batch(
        run.id, metrics=[gitml.Metric("loss", 1 / (i + 1), T0 + i, i) for i in range(3)]
    )
    assert cli("runs", "metric", run.id[:8], "loss", "--csv").stdout.splitlines() == [
        "step,timestamp,value",
        f"0,{T0},1.0",
        f"1,{T0 + 1},0.5",
        f"2,{T0 + 2},0.3333333333333333",
    ]
    points = json.loads(cli("runs", "metric", run.id[:8], "loss", "--json").stdout)
    assert points[2] == {"step": 2, "timestamp": T0 + 2, "value": 1 / 3}
    assert cli("runs", "metric", run.id[:8], "loss").stdout.splitlines() == [
        "0\t2023-11-14 22:13:20.000 UTC\t1.0",
        "1\t2023-11-14 22:13:20.001 UTC\t0.5",
        "2\t2023-11-14 22:13:20.002 UTC\t0.3333333333333333",
    ]
    assert cli("runs", "metric", run.id, "loss", "--csv", "--json", ok=False).exit_code == 2


def test_show_lists_logged_models_one_line_each(repo: Path) -> None:
    clf, features = iris_classifier()
    with gitml.start_run() as run:
        gitml.sklearn.log_model(clf, "model", input_example=features.head(2))
        gitml.sklearn.log_model(clf, "second")
    run_id = run.run_id
    history = json.loads(gitml.Client().get_run(run_id).tags["mlflow.log-model.history"])
    out = cli("runs", "show", run_id).stdout
    lines = out.splitlines()
    assert "Tags: none" in lines
    start = lines.index("Logged models (mlflow.log-model.history)")
    for line, entry in zip(lines[start + 1 : start + 3], history, strict=True):
        created = entry["utc_time_created"][:19]
        assert line.split() == [
            entry["artifact_path"],
            "python_function,",
            "sklearn",
            *created.split(),
            "UTC",
        ]
    assert "utc_time_created" not in out  # no raw JSON
    shown = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert json.loads(shown["tags"]["mlflow.log-model.history"]) == history


def test_tag_set_and_delete(repo: Path, runs: dict[str, str]) -> None:
    result = cli("runs", "tag", runs["c"][:8], "owner", "ana")
    assert result.stdout == f"Set tag 'owner' of run {runs['c']}\n"
    assert gitml.Client().get_run(runs["c"]).tags == {"owner": "ana"}
    found = cli("runs", "search", "tags.owner = 'ana'", "--json")
    assert names(found.stdout) == ["c"]
    result = cli("runs", "tag", runs["c"][:8], "owner", "--delete")
    assert result.stdout == f"Deleted tag 'owner' of run {runs['c']}\n"
    assert gitml.Client().get_run(runs["c"]).tags == {}
    line = one_error_line(cli("runs", "tag", runs["c"], "owner", "--delete", ok=False))
    assert "has no tag 'owner'" in line
    assert cli("runs", "tag", runs["c"], "owner", ok=False).exit_code == 2
    assert cli("runs", "tag", runs["c"], "owner", "x", "--delete", ok=False).exit_code == 2
    line = one_error_line(cli("runs", "tag", runs["c"], "bad key!", "x", ok=False))
    assert "bad key!" in line


def test_delete_restore_and_views(runs: dict[str, str]) -> None:
    cli("runs", "delete", runs["c"][:8])
    assert names(cli("runs", "list", "--deleted", "--json").stdout) == ["e", "c"]
    cli("runs", "restore", runs["e"][:8])
    assert names(cli("runs", "list", "--json").stdout) == ["e", "d", "b", "a"]


# -- the real executable --------------------------------------------------------------------


def test_executable_search_and_errors(repo: Path, runs: dict[str, str]) -> None:
    done = gitml_exe(repo, "runs", "search", "metrics.rmse < 0.6", "--csv", "--columns", "name")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["run_id,run_name", f"{runs['d']},d", f"{runs['b']},b"]

    done = gitml_exe(repo, "runs", "search", "params.alpha = ")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "^" in done.stderr
    assert "Traceback" not in done.stderr

    done = gitml_exe(repo, "runs", "diff", runs["a"][:8], runs["b"][:8], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["b"]["name"] == "b"


def test_a_malformed_experiment_is_a_warning_in_listings(repo: Path) -> None:
    client = gitml.Client()
    good = client.create_run("churn").id
    bad = client.create_run("fraud").id
    fraud = client.get_run(bad).experiment_id
    ref = f"refs/gitml/experiments/{fraud}"
    commit_file_on_ref(repo, ref, "experiment.yaml", "id: x\nname: [oops\n")
    warning = f"warning: skipped malformed record {ref}:experiment.yaml: field '(document)': "
    listed = cli("runs", "list")
    assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == {good[:12], bad[:12]}
    assert "churn" in listed.stdout
    assert listed.stderr.startswith(warning + "not valid YAML")
    assert listed.stderr.count("warning:") == 1
    experiments = cli("experiments", "list", "--json")
    assert [e["name"] for e in json.loads(experiments.stdout)] == ["churn"]
    assert experiments.stderr.startswith(warning)
    table = cli("experiments", "list")
    assert [line.split()[1] for line in table.stdout.splitlines()[1:]] == ["churn"]

"""``gitml import mlflow``: an MLflow store that MLflow's own client filled, copied into Git.

MLflow runs only in child processes (its import-time warnings and global state
stay out of pytest); a child fills a SQLite or file store and prints what
MLflow itself reports for it (every run's params, tags, metric history,
artifact bytes, the registry), and the tests compare what gitml reads after
``gitml import mlflow`` (a real process) with that answer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gitml.pyfunc
from gitml.registry.declarations import read_declaration
from gitml.registry.versions import Registry
from gitml.tracking.client import Client
from testing.cli import cli, one_error_line
from testing.git import git, init_repo
from testing.mlflow_ref import mlflow_answer
from testing.mlflow_server import mlflow_server
from testing.procs import child_env, wait_for

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="mlflow is not installed (it is in the dev extra: pip install -e '.[dev]')",
)

# One script, three uses: "fill" a store, add "more" to it, or fill it with
# "many" small runs; each prints MLflow's own view of the whole store.
MLFLOW_STORE = """
import hashlib, json, sys, tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, ViewType

uri, mode, served = sys.argv[1], sys.argv[2], Path(sys.argv[3])
if uri.startswith("sqlite:"):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    # Every SQLite commit waits for the disk otherwise (MLflow commits each call, and its
    # schema migrations one by one): most of a fill's time. What MLflow writes is the same.
    @event.listens_for(Engine, "connect")
    def unsynced(connection, _record):
        connection.execute("PRAGMA synchronous=OFF")


mlflow.set_tracking_uri(uri)
client = MlflowClient()
X = [[0.0], [1.0], [2.0], [3.0]]


def fill():
    from sklearn.linear_model import LogisticRegression

    exp_a = client.create_experiment("exp-a", tags={"team": "fraud"})
    with mlflow.start_run(experiment_id=exp_a, run_name="parent"):
        mlflow.log_params({"lr": "0.1", "depth": 3})
        mlflow.set_tag("purpose", "import test")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step, timestamp=1000 + step)
        mlflow.log_metric("loss", float("nan"), step=5, timestamp=1005)
        mlflow.log_metric("loss", 0.1, step=5, timestamp=1005)  # same step and time, twice
        mlflow.log_metric("a key/with:colon", 2.5)
        mlflow.log_text("hello", "notes/a.txt")
        mlflow.log_dict({"a": 1}, "config/params.json")
        big = Path(tempfile.mkdtemp()) / "weights.bin"
        big.write_bytes(bytes(range(256)) * 20)
        mlflow.log_artifact(str(big), "blobs")
        with mlflow.start_run(run_name="child", nested=True):
            mlflow.log_metric("acc", 0.5, step=0)
            mlflow.log_metric("acc", 0.7, step=1)
        model = LogisticRegression().fit(X, [0, 0, 1, 1])
        # Naming the requirements spares MLflow a child process that infers them; cloudpickle
        # spares every loader skops's scan of scikit-learn (which imports torch, seconds).
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="churn",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
        client.create_model_version(
            "churn", logged.model_uri, logged.run_id, model_id=logged.model_id
        )
    exp_b = client.create_experiment("exp-b")
    failed = client.create_run(exp_b, run_name="failed", start_time=5000)
    client.log_batch(
        failed.info.run_id,
        metrics=[Metric("m", float(i), 6000 + i, i) for i in range(30)],
        params=[Param("p", "x")],
    )
    client.set_terminated(failed.info.run_id, "FAILED", end_time=7000)
    gone = client.create_run(exp_b, run_name="gone")
    client.set_terminated(gone.info.run_id)
    client.delete_run(gone.info.run_id)
    client.update_registered_model("churn", description="who leaves")
    client.set_registered_model_tag("churn", "owner", "ml-team")
    client.update_model_version("churn", "1", description="the first")
    client.set_model_version_tag("churn", "1", "validated", "yes")
    client.transition_model_version_stage("churn", "1", "Staging")
    client.transition_model_version_stage("churn", "2", "Production")
    client.set_registered_model_alias("churn", "champion", "1")
    if str(served) != "-":
        # What an MLflow server with --artifacts-destination writes: the store
        # names mlflow-artifacts: locations, the files are in the server's folder.
        exp_s = client.create_experiment("served", artifact_location="mlflow-artifacts:/team")
        remote = client.create_run(exp_s, run_name="remote")
        client.set_terminated(remote.info.run_id)
        folder = served / "team" / remote.info.run_id / "artifacts" / "out"
        folder.mkdir(parents=True)
        (folder / "result.txt").write_text("served bytes")


def more():
    parent = client.search_runs(
        [client.get_experiment_by_name("exp-a").experiment_id],
        filter_string="attributes.run_name = 'parent'",
    )[0]
    client.log_metric(parent.info.run_id, "loss", 0.05, step=6, timestamp=1006)
    late = client.create_run(client.get_experiment_by_name("exp-b").experiment_id, run_name="late")
    client.log_param(late.info.run_id, "q", "1")
    client.set_terminated(late.info.run_id)


def many(count):
    exp = client.create_experiment("bulk")
    for i in range(count):
        run = client.create_run(exp, run_name=f"r{i}", start_time=10_000 + i)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(s), 20_000 + s, s) for k in ("a", "b") for s in range(20)],
            params=[Param(f"p{j}", str(j)) for j in range(5)],
        )
        client.set_terminated(run.info.run_id, end_time=30_000 + i)


def files_of(location):
    path = location[len("file://"):] if location.startswith("file://") else location
    if ":" not in path and not Path(path).exists():
        return {}  # a run that logged no artifact has no folder
    if location.startswith("mlflow-artifacts:") and uri.startswith("http"):
        # Through the server's proxy, as its clients read them.
        if not mlflow.artifacts.list_artifacts(artifact_uri=location):
            return {}
    elif location.startswith("mlflow-artifacts:"):
        root = served / location[len("mlflow-artifacts:/"):]
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()
        }
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location))
    return {
        p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in local.rglob("*") if p.is_file()
    }


def answer(with_files):
    out = {"experiments": {}, "runs": {}, "logged_models": [], "models": {}}
    if with_files:
        # First: loading a registered model writes a file into a local store's folder.
        loaded = mlflow.pyfunc.load_model("models:/churn/1")
        out["prediction"] = [int(v) for v in loaded.predict([[0.5], [2.5]])]
    exps = client.search_experiments(view_type=ViewType.ALL)
    for exp in exps:
        out["experiments"][exp.experiment_id] = {
            "name": exp.name, "tags": dict(exp.tags), "lifecycle_stage": exp.lifecycle_stage,
        }
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
            info = run.info
            history = {
                key: sorted(
                    [m.step, m.timestamp, repr(m.value)]
                    for m in client.get_metric_history(info.run_id, key)
                )
                for key in run.data.metrics
            }
            out["runs"][info.run_id] = {
                "experiment_id": info.experiment_id, "name": info.run_name,
                "status": info.status, "lifecycle_stage": info.lifecycle_stage,
                "start_time": info.start_time, "end_time": info.end_time,
                "user": info.user_id, "params": dict(run.data.params),
                "tags": dict(run.data.tags), "history": history,
                "files": files_of(info.artifact_uri) if with_files else {},
            }
    if not with_files:
        return out
    for model in client.search_logged_models([e.experiment_id for e in exps]):
        out["logged_models"].append({
            "name": model.name, "run_id": model.source_run_id,
            "files": files_of(model.artifact_location),
        })
    for model in client.search_registered_models():
        out["models"][model.name] = {
            "description": model.description, "tags": dict(model.tags),
            "aliases": {a: int(v) for a, v in model.aliases.items()},
            "versions": {
                mv.version: {
                    "description": mv.description, "tags": dict(mv.tags),
                    "run_id": mv.run_id, "stage": mv.current_stage,
                }
                for mv in client.search_model_versions(f"name = '{model.name}'")
            },
        }
    return out


if mode == "fill":
    fill()
elif mode == "more":
    more()
else:
    many(int(mode))
print(json.dumps(answer(mode != "many" and not mode.isdigit())))
"""


def fill(work: Path, uri: str, mode: str, served: Path | None = None) -> Any:
    """MLflow's view of the store at ``uri`` after ``mode`` (see ``MLFLOW_STORE``)."""
    return mlflow_answer(MLFLOW_STORE, work, uri, mode, str(served) if served else "-")


def gitml_import(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gitml import mlflow ARGS`` as a real process (it imports MLflow: not in pytest's)."""
    return subprocess.run(
        ["gitml", "import", "mlflow", *args],
        cwd=repo,
        env=child_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def summary(repo: Path, *args: str) -> dict[str, Any]:
    done = gitml_import(repo, *args, "--json")
    assert done.returncode == 0, done.stderr
    assert "runs  [" not in done.stderr  # no progress bar when stderr is not a terminal
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref")


def counts(result: dict[str, Any], what: str) -> tuple[int, int, int]:
    c = result[what]
    return c["imported"], c["updated"], c["skipped"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_same_runs(client: Client, answer: dict[str, Any]) -> None:
    """Every run as MLflow reports it: record, params, tags, metric history, artifact bytes."""
    models_of: dict[str, dict[str, str]] = {}
    for model in answer["logged_models"]:
        for rel, digest in model["files"].items():
            models_of.setdefault(model["run_id"], {})[f"{model['name']}/{rel}"] = digest
    for run_id, want in answer["runs"].items():
        run = client.get_run(run_id)
        got = {
            "experiment_id": run.experiment_id,
            "name": run.name,
            "status": run.status,
            "lifecycle_stage": run.lifecycle_stage,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "user": run.user,
            "params": run.params,
            "tags": run.tags,
        }
        assert got == {k: want[k] for k in got}, run_id
        history = {
            key: sorted(
                [m.step, m.timestamp, repr(m.value)] for m in client.get_metric_history(run_id, key)
            )
            for key in run.metrics
        }
        assert history == want["history"], run_id
        files = {**want["files"], **models_of.get(run_id, {})}
        listed = {a.path for a in client.list_artifacts(run_id)}
        assert listed == set(files), run_id
        for path, digest in files.items():
            assert sha(client.read_artifact(run_id, path)) == digest, (run_id, path)


def assert_same_registry(client: Client, answer: dict[str, Any]) -> None:
    """The model churn as MLflow reports it: versions, tags, stages and alias, predictions."""
    registry = Registry(client)
    want = answer["models"]["churn"]
    model = registry.get_model("churn")
    assert (model.description, model.tags) == (want["description"], want["tags"])
    for number, version in want["versions"].items():
        got = registry.get_version("churn", number)
        # No description: None from MLflow's SQL store, "" through its server.
        assert (got.description, got.tags, got.run_id) == (
            version["description"] or None,
            version["tags"],
            version["run_id"],
        )
    declared = {
        stage: [v.version for v in d.versions]
        for stage in ("staging", "production", "champion")
        if (d := read_declaration(client.store, stage, "churn")) is not None
    }
    mlflow_stages: dict[str, list[int]] = {"champion": [want["aliases"]["champion"]]}
    for number, version in want["versions"].items():
        if version["stage"] != "None":
            mlflow_stages[version["stage"].lower()] = [int(number)]
    assert declared == mlflow_stages
    predicted = gitml.pyfunc.load_model("models:/churn/1").predict(np.array([[0.5], [2.5]]))
    assert [int(v) for v in predicted] == answer["prediction"]


def assert_nothing_new(repo: Path, *args: str) -> None:
    """Importing again imports and updates nothing, and moves no ref."""
    imported = refs(repo)
    again = summary(repo, *args)
    for what in ("experiments", "runs", "metrics", "artifacts", "models", "versions", "stages"):
        assert again[what]["imported"] == again[what]["updated"] == 0, what
    assert refs(repo) == imported


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path, Any]:
    """A SQLite store MLflow filled (with a served experiment), and MLflow's view of it."""
    work = tmp_path_factory.mktemp("mlflow-sqlite")
    served = work / "mlartifacts"
    uri = f"sqlite:///{work / 'mlflow.db'}"
    return work, uri, served, fill(work, uri, "fill", served)


def new_repo(path: Path) -> Path:
    """A work repository whose large artifacts (over 1,000 bytes) go to a folder store."""
    init_repo(path)
    (path / ".gitml.yaml").write_text(
        f"artifact_store: {path.parent / (path.name + '-store')}\nartifact_threshold: 1000\n"
    )
    return path


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)  # MLflow's import alone takes 10 s and more on a busy machine
def test_sqlite_store_is_copied_as_mlflow_reports_it_and_again_adds_only_what_is_new(
    sqlite_store: tuple[Path, str, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, shared_uri, served, answer = sqlite_store
    # This test adds to the store: a copy of it, so the module's other tests see it as filled.
    shutil.copy(shared_uri.removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    repo = new_repo(tmp_path / "work")
    monkeypatch.chdir(repo)  # gitml's Client reads the .gitml.yaml of where it stands
    before = refs(repo)

    # The served experiment's files are only where its server kept them.
    refused = gitml_import(repo, uri)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: experiment 'served'")
    assert "--artifacts-from" in refused.stderr
    assert refs(repo) == before

    planned = summary(repo, uri, "--artifacts-from", str(served), "--dry-run")
    assert refs(repo) == before
    done = summary(repo, uri, "--artifacts-from", str(served))
    assert {k: v for k, v in planned.items() if k != "dry_run"} == {
        k: v for k, v in done.items() if k != "dry_run"
    }
    assert counts(done, "runs") == (len(answer["runs"]), 0, 0)
    assert counts(done, "versions") == (2, 0, 0)
    assert done["problems"] == [
        "alias 'champion' of model 'churn' is the stage branch gitml/champion: list "
        "'champion' under 'stages' in .gitml.yaml to use gitml stage commands on it"
    ]

    client = Client()
    assert {e.id: e.name for e in client.list_experiments()} == {
        k: v["name"] for k, v in answer["experiments"].items()
    }
    exp_a = client.get_experiment_by_name("exp-a")
    assert exp_a is not None and exp_a.tags == {"team": "fraud"}
    assert_same_runs(client, answer)
    parent = next(r for r, v in answer["runs"].items() if v["name"] == "parent")
    assert client.list_artifacts(parent, "blobs")[0].storage == "external"

    assert_same_registry(client, answer)
    loaded = gitml.pyfunc.load_model(f"runs:/{parent}/model")
    assert [int(v) for v in loaded.predict(np.array([[0.5], [2.5]]))] == answer["prediction"]

    # Again: nothing is new, nothing is written.
    assert_nothing_new(repo, uri, "--artifacts-from", str(served))

    # MLflow gets a new run and one more point on an old one: only those move.
    later = fill(work, uri, "more", served)
    third = summary(repo, uri, "--artifacts-from", str(served))
    assert counts(third, "runs") == (1, 1, len(answer["runs"]) - 1)
    assert counts(third, "metrics")[0] == 1
    assert_same_runs(Client(), {**later, "logged_models": answer["logged_models"]})


@pytest.fixture(scope="module")
def served_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """MLflow's own server (SQLite, proxied artifacts) that MLflow's client filled through
    it, and MLflow's view of it (artifact bytes read through the server's proxy)."""
    work = tmp_path_factory.mktemp("mlflow-served")
    with mlflow_server(work / "server", timeout=600) as url:
        yield url, fill(work, url, "fill", work / "server" / "artifacts")


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)  # MLflow's server starts in a minute and more on a busy machine
def test_live_server_is_copied_through_its_api_and_artifact_proxy(
    served_store: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, answer = served_store
    repo = new_repo(tmp_path / "work")
    monkeypatch.chdir(repo)
    done = summary(repo, url)
    assert counts(done, "runs") == (len(answer["runs"]), 0, 0)
    assert counts(done, "versions") == (2, 0, 0)
    client = Client()
    assert {e.id: e.name for e in client.list_experiments()} == {
        k: v["name"] for k, v in answer["experiments"].items()
    }
    assert_same_runs(client, answer)
    parent = next(r for r, v in answer["runs"].items() if v["name"] == "parent")
    assert client.list_artifacts(parent, "blobs")[0].storage == "external"
    remote = next(r for r, v in answer["runs"].items() if v["name"] == "remote")
    assert client.read_artifact(remote, "out/result.txt") == b"served bytes"
    assert_same_registry(client, answer)
    assert_nothing_new(repo, url)


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)  # MLflow's import alone takes 10 s and more on a busy machine
def test_experiment_option_imports_that_experiment_only(
    sqlite_store: tuple[Path, str, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _work, uri, _served, answer = sqlite_store
    repo = new_repo(tmp_path / "work")
    monkeypatch.chdir(repo)
    done = summary(repo, uri, "--experiment", "exp-b")
    wanted = {r for r, v in answer["runs"].items() if v["experiment_id"] in _ids(answer, "exp-b")}
    client = Client()
    runs, _ = client.list_runs(include_deleted=True)
    assert {r.id for r in runs} == wanted
    assert counts(done, "runs")[0] == len(wanted)
    # churn's versions come from exp-a's run: left out, and said so.
    assert counts(done, "versions") == (0, 0, 2)
    assert len(done["problems"]) == 2


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_terminal_sees_a_progress_bar(
    sqlite_store: tuple[Path, str, Path, Any], tmp_path: Path
) -> None:
    import pty

    _work, uri, served, answer = sqlite_store
    repo = init_repo(tmp_path / "work")
    leader, follower = pty.openpty()
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        proc = subprocess.Popen(
            ["gitml", "import", "mlflow", uri, "--artifacts-from", str(served), "--dry-run"],
            cwd=repo,
            env=child_env(MLFLOW_DISABLE_TELEMETRY="true"),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = terminal.read(4096)
            except OSError:  # EIO: the child closed the terminal's last writer
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, shown
    text = shown.decode(errors="replace")
    assert "runs  [" in text and "100%" in text
    assert f"runs: would import {len(answer['runs'])}" in out


def _ids(answer: dict[str, Any], name: str) -> set[str]:
    return {k for k, v in answer["experiments"].items() if v["name"] == name}


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)  # MLflow's import alone takes 10 s and more on a busy machine
def test_file_store_is_copied_as_mlflow_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "mlflow"
    answer = fill(work, str(work / "mlruns"), "fill")
    repo = new_repo(tmp_path / "work")
    monkeypatch.chdir(repo)
    done = summary(repo, str(work / "mlruns"))
    assert counts(done, "runs") == (len(answer["runs"]), 0, 0)
    assert_same_runs(Client(), answer)
    assert read_declaration(Client().store, "champion", "churn") is not None


# MLflow's client logs a run into each bucket location given (runs of an abfss:// one are
# only created: MLflow's ADLS repository needs azure-storage-file-datalake and a DFS
# endpoint, which Azurite lacks; the test writes their files in MLflow's layout), and
# creates a run in a bucket that does not exist. Prints each run's id and MLflow's files.
BUCKETED = """
import hashlib, json, sys, tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient

uri, missing, locations = sys.argv[1], sys.argv[2], sys.argv[3:]
mlflow.set_tracking_uri(uri)
client = MlflowClient()
folder = Path(tempfile.mkdtemp())
(folder / "deep").mkdir()
(folder / "deep" / "weights.bin").write_bytes(bytes(range(256)) * 8192)
(folder / "config.json").write_text('{"lr": 0.1}')
out = {"runs": {}}
for n, location in enumerate([missing, *locations]):
    exp = client.create_experiment(f"bucket-{n}", artifact_location=location)
    run_id = client.create_run(exp, run_name=location).info.run_id
    files = {}
    if n and not location.startswith("abfss://"):
        client.log_artifacts(run_id, str(folder), "model")
        client.log_text(run_id, "hello", "notes/a.txt")
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id))
        files = {
            p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in local.rglob("*") if p.is_file()
        }
    client.set_terminated(run_id)
    out["runs"][location] = {"id": run_id, "files": files}
print(json.dumps(out))
"""


def mlflow_locations(provider: Any, bucket: str) -> tuple[str, list[str]]:
    """A location in a bucket that does not exist, and those MLflow users write in ``bucket``."""
    if provider.scheme == "gs":
        return "gs://no-such-bucket-here/mlflow", [f"gs://{bucket}/mlflow"]
    account = "devstoreaccount1"  # the connection string's, which MLflow and gitml use
    return f"wasbs://no-such-container@{account}.blob.core.windows.net/mlflow", [
        f"wasbs://{bucket}@{account}.blob.core.windows.net/mlflow",
        f"abfss://{bucket}@{account}.dfs.core.windows.net/lake",
    ]


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)  # MLflow's import alone takes 10 s and more on a busy machine
@pytest.mark.parametrize("provider", ["gcs", "azure"], indirect=True)
def test_runs_in_google_and_azure_buckets_are_read_with_gitmls_clients(
    sqlite_store: tuple[Path, str, Path, Any],
    provider: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider.env(monkeypatch)
    bucket = provider.new_bucket()
    # Added to a copy of the module's store: MLflow migrates a new SQLite store for minutes.
    shutil.copy(sqlite_store[1].removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    missing, locations = mlflow_locations(provider, bucket)
    logged = mlflow_answer(BUCKETED, tmp_path, uri, missing, *locations)["runs"]
    for location in locations:
        if location.startswith("abfss://"):
            run = logged[location]
            prefix = f"lake/{run['id']}/artifacts"
            for rel, data in {"model/deep/w.bin": os.urandom(3000), "a.txt": b"lake"}.items():
                provider.put(bucket, f"{prefix}/{rel}", data)
                run["files"][rel] = sha(data)
    repo = new_repo(tmp_path / "work")
    monkeypatch.chdir(repo)

    refused = gitml_import(repo, uri, "--experiment", "bucket-0")
    assert refused.returncode == 1, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: artifact store {missing}/{logged[missing]['id']}/artifacts")
    assert "does not exist" in line
    assert Client().list_runs()[0] == []

    names = [f"--experiment=bucket-{n + 1}" for n in range(len(locations))]
    done = summary(repo, uri, *names)
    assert counts(done, "runs") == (len(locations), 0, 0)
    client = Client()
    for location in locations:
        run = logged[location]
        assert run["files"]
        assert {a.path for a in client.list_artifacts(run["id"])} == set(run["files"])
        for path, digest in run["files"].items():
            assert sha(client.read_artifact(run["id"], path)) == digest, (location, path)


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(900)  # MLflow's import alone takes 10 s and more on a busy machine
def test_import_killed_midway_leaves_whole_runs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "mlflow"
    uri = f"sqlite:///{work / 'mlflow.db'}"
    total = 150
    answer = fill(work, uri, str(total))
    repo = init_repo(tmp_path / "work")
    monkeypatch.chdir(repo)
    loose = repo / ".git" / "refs" / "gitml" / "runs"

    def imported() -> int:
        """Runs whose refs are written (one being written is an <id>.lock file first)."""
        return sum(1 for name in os.listdir(loose) if not name.endswith(".lock"))

    proc = subprocess.Popen(
        ["gitml", "import", "mlflow", uri],
        cwd=repo,
        env=child_env(MLFLOW_DISABLE_TELEMETRY="true"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: loose.is_dir() and imported() >= 5, 240, "5 imported runs")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    client = Client()
    present, _ = client.list_runs()
    assert 5 <= len(present) < total, "the import finished before it was killed"
    for run in present:  # each run there is whole: every point MLflow has
        want = answer["runs"][run.id]
        assert run.status == want["status"] == "FINISHED"
        for key, points in want["history"].items():
            assert len(client.get_metric_history(run.id, key)) == len(points)
    assert client.recovered == []  # nothing was left in a journal to half-commit

    resumed = summary(repo, uri)
    assert counts(resumed, "runs") == (total - len(present), 0, len(present))
    runs, _ = Client().list_runs()
    assert {r.id for r in runs} == set(answer["runs"])


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: f"sqlite:///{d / 'nothing.db'}", "no such file"),
        (lambda d: _write(d / "notes.db", b"plain text, not SQLite\n" * 200), "not an SQLite"),
        (lambda d: _sqlite_without_mlflow(d / "other.db"), "not MLflow's"),
        (lambda d: str(d / "no-folder"), "no such folder"),
        (lambda d: str(_folder(d / "empty")), "not an MLflow file store"),
        (lambda d: f"http://127.0.0.1:{_free_port()}", "cannot reach an MLflow server"),
    ],
)
def test_unreadable_source_is_one_error_and_writes_nothing(
    repo: Path, tmp_path: Path, make: Any, says: str
) -> None:
    source = make(tmp_path)
    before = refs(repo)
    files = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    line = one_error_line(cli("import", "mlflow", source, ok=False))
    assert says in line
    assert refs(repo) == before
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == files
    assert not (tmp_path / "nothing.db").exists()  # MLflow would have made a new store


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return f"sqlite:///{path}"


def _sqlite_without_mlflow(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id TEXT)")
    db.close()
    return f"sqlite:///{path}"


def _folder(path: Path) -> Path:
    path.mkdir()
    (path / "readme.txt").write_text("not a store")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_a_gitml_server_is_not_a_destination(repo: Path, tmp_path: Path) -> None:
    store = _folder(tmp_path / "mlruns")
    (store / ".trash").mkdir()
    server = f"http://127.0.0.1:{_free_port()}"
    line = one_error_line(cli("import", "mlflow", str(store), "--tracking-uri", server, ok=False))
    assert "writes to a repository directly" in line


def test_missing_mlflow_names_the_extra(repo: Path, tmp_path: Path) -> None:
    """Without the mlflow package the command says which extra brings it."""
    store = str(_folder(tmp_path / "mlruns"))
    (tmp_path / "mlruns" / ".trash").mkdir()
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "mlflow.py").write_text("raise ImportError('blocked for the test')\n")
    env = child_env(PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gitml.cli import main; main()",
            "import",
            "mlflow",
            str(store),
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "pip install 'gitml[mlflow]'" in done.stderr

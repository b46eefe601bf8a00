"""One workload of MLflow's own client, run against any tracking URI; its answers as JSON.

``python -m testing.mlflow_workload`` with ``MLFLOW_TRACKING_URI`` set logs
runs, nested runs, batches, artifacts, a scikit-learn model with autolog and
``log_model(registered_model_name=)``, aliases, searches, deletes, tags on
models and versions, logged models' tags and params, experiments renamed,
tagged, deleted and restored, a registered model deleted, and errors, then
prints every answer on one line of JSON.
Ids and times differ between stores, so runs are named by their run names and
times are left out: the output of two stores is comparable as it is. The
tests run it against ``gitml server`` or ``gitml:`` and against MLflow itself;
the benchmark times it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def run_workload(cwd: Path, env: dict[str, str], timeout: float = 400) -> dict[str, Any]:
    """The workload's answers, run by MLflow's client in a child process (with its time, as
    ``seconds``)."""
    answers, _waits = timed_workload(cwd, env, timeout)
    return answers


def timed_workload(
    cwd: Path, env: dict[str, str], timeout: float = 400
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workload's answers, and how long its client waited on the server (see ``Waits``)."""
    done = subprocess.run(
        [sys.executable, "-m", "testing.mlflow_workload"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"workload failed:\n{done.stdout}\n{done.stderr}"
    answers: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    waits: dict[str, Any] = answers.pop("waits")
    return answers, waits


class Waits:
    """The time MLflow's client spends waiting for HTTP answers, in all and by route.

    ``waiting`` counts the wall time while at least one request is open (the
    client's upload threads may overlap), so the rest of the workload's time is
    the client's own work; ``routes`` adds up each request's latency by method
    and path (ids and artifact paths cut off), with how many there were.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.since = 0.0
        self.waiting = 0.0
        self.routes: dict[str, list[float]] = {}

    def install(self) -> None:
        import requests

        send = requests.Session.send
        waits = self

        def timed(session: Any, request: Any, **kwargs: Any) -> Any:
            waits.enter()
            started = time.perf_counter()
            try:
                return send(session, request, **kwargs)
            finally:
                waits.leave(f"{request.method} {_route(request.path_url)}", started)

        requests.Session.send = timed  # type: ignore[method-assign,assignment]

    def enter(self) -> None:
        with self.lock:
            if self.open == 0:
                self.since = time.perf_counter()
            self.open += 1

    def leave(self, route: str, started: float) -> None:
        now = time.perf_counter()
        with self.lock:
            self.open -= 1
            if self.open == 0:
                self.waiting += now - self.since
            count = self.routes.setdefault(route, [0, 0.0])
            count[0] += 1
            count[1] += now - started

    def to_plain(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "routes": self.routes}


def _route(path: str) -> str:
    path = path.split("?", 1)[0]
    artifacts = "/api/2.0/mlflow-artifacts/artifacts/"
    if path.startswith(artifacts):
        return artifacts + "..."
    # Logged models are addressed by id in the path (logged-models/m-<hex>/tags).
    return "/".join(":id" if part.startswith("m-") else part for part in path.split("/"))


# Named so that MLflow does not infer them by loading the model in a child process (~10 s).
REQUIREMENTS = ["scikit-learn", "numpy"]


def main() -> None:
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag, ViewType
    from mlflow.exceptions import MlflowException
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    if mlflow.get_tracking_uri().startswith("gitml:"):
        from gitml.mlflow import plugin

        plugin.register()  # a checkout without gitml's entry points installed
    client = MlflowClient()
    out: dict[str, Any] = {}
    names: dict[str, str] = {}  # run id -> run name, to say which run an answer is about
    waits = Waits()
    waits.install()
    started = time.perf_counter()

    def name_of(run_id: str) -> str:
        return names.get(run_id, "?")

    def run_view(run: Any) -> dict[str, Any]:
        tags = {
            k: (name_of(v) if k == "mlflow.parentRunId" else v)
            for k, v in run.data.tags.items()
            # Not mlflow.user: gitml reports it on every run (as user_id), MLflow where its
            # client set the tag.
            if k in ("mlflow.runName", "mlflow.parentRunId", "team", "stage")
        }
        return {
            "name": run.info.run_name,
            "status": run.info.status,
            "lifecycle_stage": run.info.lifecycle_stage,
            "params": dict(sorted(run.data.params.items())),
            "metrics": dict(sorted(run.data.metrics.items())),
            "tags": dict(sorted(tags.items())),
            "has_end_time": run.info.end_time is not None,
            "user_id": run.info.user_id,
        }

    def error(call: Any) -> str:
        try:
            call()
        except MlflowException as exc:
            return str(exc.error_code)
        return "no error"

    experiment = mlflow.set_experiment("compat")
    out["experiment"] = {
        "name": experiment.name,
        "lifecycle_stage": experiment.lifecycle_stage,
        "by_name": client.get_experiment_by_name("compat").experiment_id
        == experiment.experiment_id,
    }

    # Fluent runs, nested.
    with mlflow.start_run(run_name="parent") as parent:
        names[parent.info.run_id] = "parent"
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"depth": 3, "kind": "tree"})
        for step, loss in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.set_tag("team", "ml")
        with mlflow.start_run(run_name="child", nested=True) as child:
            names[child.info.run_id] = "child"
            mlflow.log_metrics({"acc": 0.75, "f1": 0.5})
            mlflow.log_param("lr", 0.01)
    # log_batch through the client.
    batch = client.create_run(experiment.experiment_id, run_name="batch", tags={"stage": "dev"})
    names[batch.info.run_id] = "batch"
    now = int(time.time() * 1000)
    client.log_batch(
        batch.info.run_id,
        metrics=[Metric("loss", 1.0 / (i + 1), now + i, i) for i in range(20)],
        params=[Param("lr", "0.5"), Param("depth", "7")],
        tags=[RunTag("team", "data")],
    )
    client.set_terminated(batch.info.run_id)
    out["history"] = [
        (m.step, m.value) for m in client.get_metric_history(batch.info.run_id, "loss")
    ]
    out["runs"] = [
        run_view(client.get_run(r))
        for r in (parent.info.run_id, child.info.run_id, batch.info.run_id)
    ]

    # Artifacts.
    with mlflow.start_run(run_name="artifacts") as run:
        names[run.info.run_id] = "artifacts"
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config.json")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data.csv"
            local.write_text("x,y\n1,2\n")
            mlflow.log_artifact(str(local), "inputs")
        uri = run.info.artifact_uri
    out["artifacts"] = {
        "dict": mlflow.artifacts.load_dict(f"{uri}/config.json"),
        "text": mlflow.artifacts.load_text(f"{uri}/notes/hello.txt"),
        "root": sorted(
            (f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run.info.run_id)
        ),
        "inputs": sorted(
            (f.path, f.is_dir, f.file_size)
            for f in client.list_artifacts(run.info.run_id, "inputs")
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        fetched = Path(client.download_artifacts(run.info.run_id, "inputs", tmp))
        out["artifacts"]["downloaded"] = (fetched / "data.csv").read_text()

    # scikit-learn: autolog, then log_model with a registered name.
    x, y = load_iris(return_X_y=True)
    mlflow.sklearn.autolog(log_models=False, log_datasets=False)
    with mlflow.start_run(run_name="autolog") as run:
        names[run.info.run_id] = "autolog"
        LogisticRegression(max_iter=200).fit(x, y)
    mlflow.sklearn.autolog(disable=True)
    autolog = client.get_run(run.info.run_id)
    out["autolog"] = {
        "params": sorted(k for k in autolog.data.params),
        "metrics": sorted(autolog.data.metrics),
    }
    model = LogisticRegression(max_iter=200).fit(x, y)
    with mlflow.start_run(run_name="model") as run:
        names[run.info.run_id] = "model"
        mlflow.log_metric("accuracy", float(model.score(x, y)))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="iris",
            pip_requirements=REQUIREMENTS,
            params={"alpha": "1"},
            tags={"kind": "linear"},
        )
    # MLflow's file store answers an int, its REST API a string.
    out["registered_version"] = str(info.registered_model_version)

    def own_tags(tags: dict[str, str]) -> dict[str, str]:
        # Not mlflow.*: the stores set different system tags.
        return dict(sorted((k, v) for k, v in tags.items() if not k.startswith("mlflow.")))

    logged = mlflow.get_logged_model(info.model_id)
    client.set_logged_model_tags(info.model_id, {"reviewed": "yes"})
    client.delete_logged_model_tag(info.model_id, "kind")
    out["logged_model"] = {
        "tags": own_tags(logged.tags),
        "params": logged.params,
        "after": own_tags(mlflow.get_logged_model(info.model_id).tags),
        "missing_tag": error(lambda: client.delete_logged_model_tag(info.model_id, "kind")),
    }
    client.set_registered_model_alias("iris", "champion", "1")
    by_alias = client.get_model_version_by_alias("iris", "champion")
    loaded = mlflow.pyfunc.load_model("models:/iris@champion")
    out["registry"] = {
        "by_alias": [str(by_alias.version), sorted(by_alias.aliases), name_of(by_alias.run_id)],
        "prediction": [int(v) for v in loaded.predict(x[:5])],
        "expected": [int(v) for v in model.predict(x[:5])],
    }
    client.set_registered_model_tag("iris", "owner", "ml")
    client.set_model_version_tag("iris", "1", "validated", "yes")
    client.update_model_version("iris", "1", description="first")
    registered = client.get_registered_model("iris")
    version = client.get_model_version("iris", "1")
    out["registry"]["model"] = {
        "tags": registered.tags,
        "aliases": dict(registered.aliases),
        "by_tag": [m.name for m in client.search_registered_models("tags.owner = 'ml'")],
        # A tag the model lacks matches no comparison, != included.
        "missing_tag": [m.name for m in client.search_registered_models("tags.team != 'x'")],
    }
    out["registry"]["version"] = {
        "tags": version.tags,
        "description": version.description,
        "status": version.status,
        "aliases": sorted(version.aliases),
    }
    client.delete_model_version_tag("iris", "1", "validated")
    client.delete_registered_model_alias("iris", "champion")
    out["registry"]["after_delete"] = {
        "version_tags": client.get_model_version("iris", "1").tags,
        "aliases": dict(client.get_registered_model("iris").aliases),
        "by_alias": error(lambda: client.get_model_version_by_alias("iris", "champion")),
    }
    out["registry"]["search"] = sorted(
        (v.name, str(v.version)) for v in client.search_model_versions("name = 'iris'")
    )

    # Search with filters and order.
    def search(filter_string: str, order_by: list[str] | None = None, view: int = 1) -> list[str]:
        found = mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=filter_string,
            order_by=order_by,
            run_view_type=view,
            output_format="list",
        )
        return [r.info.run_name for r in found]

    out["search"] = {
        "metric": search("metrics.loss < 0.5", ["metrics.loss DESC"]),
        "param": search("params.lr = '0.1'"),
        "tag": search("tags.team = 'data'"),
        "name": search("attributes.run_name LIKE 'a%'", ["attributes.run_name ASC"]),
        "all": sorted(search("")),
    }

    # Delete and restore.
    client.delete_run(batch.info.run_id)
    out["deleted"] = {
        "active": sorted(search("")),
        "deleted": search("", view=2),
        "stage": client.get_run(batch.info.run_id).info.lifecycle_stage,
    }
    client.restore_run(batch.info.run_id)
    out["restored"] = client.get_run(batch.info.run_id).info.lifecycle_stage

    # Errors, as MLflow's client raises them.
    out["errors"] = {
        "missing_run": error(lambda: client.get_run("0" * 32)),
        "experiment_exists": error(lambda: client.create_experiment("compat")),
        "param_change": error(lambda: client.log_param(batch.info.run_id, "lr", "9")),
        "missing_experiment": error(lambda: client.get_experiment("123456789")),
        "missing_model": error(lambda: client.get_registered_model("nope")),
        "missing_version": error(lambda: client.get_model_version("iris", "7")),
        "model_exists": error(lambda: client.create_registered_model("iris")),
    }
    # Experiments after creation: tags, a rename, delete and restore (their runs with them).
    scratch = client.create_experiment("scratch", tags={"owner": "ml"})
    client.set_experiment_tag(scratch, "phase", "one")
    client.delete_experiment_tag(scratch, "owner")
    client.rename_experiment(scratch, "scratch-renamed")
    scratch_run = client.create_run(scratch, run_name="scratch-run")
    client.set_terminated(scratch_run.info.run_id)
    renamed = client.get_experiment_by_name("scratch-renamed")

    def lifecycles() -> dict[str, Any]:
        return {
            "experiment": client.get_experiment(scratch).lifecycle_stage,
            "run": client.get_run(scratch_run.info.run_id).info.lifecycle_stage,
            "runs": [r.info.run_name for r in client.search_runs([scratch])],
            "active": sorted(e.name for e in client.search_experiments()),
            "deleted": sorted(
                e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)
            ),
        }

    out["experiments"] = {
        "renamed": [renamed.experiment_id == scratch, renamed.name, own_tags(renamed.tags)],
        "old_name": client.get_experiment_by_name("scratch") is None,
        "rename_taken": error(lambda: client.rename_experiment(scratch, "compat")),
        "missing_tag": error(lambda: client.delete_experiment_tag(scratch, "owner")),
    }
    client.delete_experiment(scratch)
    out["experiments"]["deleted"] = {
        **lifecycles(),
        "create_again": error(lambda: client.create_experiment("scratch-renamed")),
        "tag": error(lambda: client.set_experiment_tag(scratch, "k", "v")),
        "delete_again": error(lambda: client.delete_experiment(scratch)),
    }
    client.restore_experiment(scratch)
    out["experiments"]["restored"] = lifecycles()
    out["experiments"]["old_name_again"] = client.get_experiment(
        client.create_experiment("scratch")
    ).name

    # Deleting a registered model: gone for the registry, with its versions.
    client.delete_registered_model("iris")
    out["registry"]["deleted"] = {
        "get": error(lambda: client.get_registered_model("iris")),
        "version": error(lambda: client.get_model_version("iris", "1")),
        "models": [m.name for m in client.search_registered_models()],
        "versions": [v.version for v in client.search_model_versions("name = 'iris'")],
        "again": error(lambda: client.delete_registered_model("iris")),
    }
    out["seconds"] = time.perf_counter() - started
    out["waits"] = waits.to_plain()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()

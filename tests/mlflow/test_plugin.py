"""``MLFLOW_TRACKING_URI=gitml:<path>``: MLflow's own client and fluent API log straight
into a Git repository, answer as MLflow does, and leave gitml records behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

import gitml
from testing.git import git
from testing.mlflow_server import mlflow_env, mlflow_server, needs_mlflow
from testing.mlflow_workload import run_workload
from testing.procs import run, write_config
from testing.tracking_server import tracking_server


@needs_mlflow
@pytest.mark.slow
# MLflow's workload (imports, autolog's scan of scikit-learn) runs twice: ~1 min each when
# the machine is idle.
@pytest.mark.timeout(900)
def test_gitml_uri_answers_as_mlflow_and_writes_gitml_records(
    repo: Path, tmp_path: Path, mlflow_reference: dict[str, Any]
) -> None:
    (repo / ".gitml.yaml").write_text("stages: [staging, production, archived, champion]\n")
    env = mlflow_env(tmp_path / "home", MLFLOW_TRACKING_URI="gitml:.")
    answers = run_workload(repo, env)
    answers.pop("seconds")
    assert answers == mlflow_reference

    # What MLflow's client logged are gitml runs, with the code commit they ran on.
    head = git(repo, "rev-parse", "HEAD").strip()
    client = gitml.Client(str(repo))
    runs = client.search_runs(None, "attributes.run_name = 'parent'")
    assert [r.name for r in runs] == ["parent"]
    assert runs[0].source.commit == head
    assert runs[0].params == {"depth": "3", "kind": "tree", "lr": "0.1"}
    # The alias was a commit on the stage branch gitml/champion, and its removal another.
    subjects = git(repo, "log", "--format=%s", "gitml/champion").splitlines()
    assert subjects[0] == "gitml: champion: remove iris"
    assert subjects[1] == "gitml: champion: iris v1"


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlflows_own_server_serves_a_gitml_repository(repo: Path, tmp_path: Path) -> None:
    """``mlflow server --backend-store-uri gitml:<repo>``: MLflow's REST calls become gitml runs."""
    with mlflow_server(tmp_path / "server", backend_store_uri=f"gitml:{repo}") as url:
        api = f"{url}/api/2.0/mlflow"
        created = httpx2.post(
            f"{api}/runs/create", json={"experiment_id": "0", "run_name": "served"}, timeout=60
        )
        assert created.status_code == 200, created.text
        run_id = created.json()["run"]["info"]["run_id"]
        logged = httpx2.post(
            f"{api}/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": [{"key": "loss", "value": 0.5, "timestamp": 7, "step": 1}],
                "params": [{"key": "lr", "value": "0.1"}],
            },
            timeout=60,
        )
        assert logged.status_code == 200, logged.text
        found = httpx2.get(f"{api}/runs/get", params={"run_id": run_id}, timeout=60).json()
    assert found["run"]["data"]["params"] == [{"key": "lr", "value": "0.1"}]
    run = gitml.Client(str(repo)).get_run(run_id)
    assert (run.name, run.params, run.metrics["loss"].value) == ("served", {"lr": "0.1"}, 0.5)


# For each tracking URI: MLflow's client logs a file above the repository's artifact
# threshold, the machine's cache of large artifacts is emptied, and MLflow reads the
# file back. Prints the sha256 of what was logged and of what came back, by run id.
ROUND_TRIP = """
import hashlib, json, os, shutil, sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient

cache, uris = Path(sys.argv[1]), sys.argv[2:]
out = {}
for n, uri in enumerate(uris):
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(f"bucketed-{n}")).info.run_id
    data = os.urandom(2 * 1024 * 1024)
    Path("weights.bin").write_bytes(data)
    client.log_artifact(run_id, "weights.bin", "model")
    shutil.rmtree(cache)
    back = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model/weights.bin"))
    out[run_id] = [hashlib.sha256(x).hexdigest() for x in (data, back.read_bytes())]
print(json.dumps(out))
"""


@needs_mlflow
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("provider", ["gcs", "azure"], indirect=True)
def test_mlflow_clients_keep_large_artifacts_in_the_repositorys_bucket(
    repo: Path, tmp_path: Path, provider: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``gitml server`` (MLflow's proxied ``mlflow-artifacts:``) and ``gitml:``."""
    provider.env(monkeypatch)
    bucket = provider.new_bucket()
    write_config(repo, artifact_threshold=1000, **provider.settings(bucket, "runs"))
    git(repo, "add", ".gitml.yaml")
    git(repo, "commit", "-qm", "artifacts in a bucket")
    cache = repo / ".git" / "gitml" / "artifacts"
    with tracking_server(repo) as server:
        env = mlflow_env(tmp_path / "home")
        done = run(ROUND_TRIP, tmp_path, str(cache), server.url, f"gitml:{repo}", env=env)
    assert done.returncode == 0, done.stderr
    logged = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(logged) == 2
    for run_id, (sent, back) in logged.items():
        assert back == sent, run_id
        [artifact] = gitml.Client(str(repo)).list_artifacts(run_id)
        assert (artifact.sha256, artifact.storage) == (sent, "external")
    assert provider.keys(bucket) == {f"runs/{s[:2]}/{s[2:]}" for s, _ in logged.values()}

"""``MLFLOW_TRACKING_URI=gitml:<path>``: MLflow's own client and fluent API log straight
into a Git repository, answer as MLflow does, and leave gitml records behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gitml
from testing.git import git
from testing.mlflow_server import mlflow_env, needs_mlflow
from testing.mlflow_workload import run_workload


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

"""Lineage: stage change -> version -> run -> parent runs -> code, and stage change summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import gitml
import gitml.sklearn
from gitml.errors import InvalidInput, NotFound
from gitml.format.records import Config
from gitml.git.store import Store
from gitml.registry.lineage import Lineage, lineage
from gitml.registry.lineage_render import describe_stage_change, render_tree
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from testing.benchmarks import run_benchmark
from testing.cli import cli, one_error_line
from testing.git import FixedClock, git
from testing.models import iris_classifier

DATASET_TAG = json.dumps(
    [{"name": "iris", "digest": "d41d8cd9", "source_type": "local", "source": "data/iris.csv"}]
)


class Project:
    """A repository with a parent run, two nested runs with models, two versions, stages."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.clock = FixedClock(1_700_000_000.0)
        self.client = gitml.Client(clock=self.clock, identity="Ada <ada@example.com>")
        self.registry = Registry(self.client)
        self.stages = Stages(self.registry, self.client.config)
        self.store = self.client.store
        self.code = git(repo, "rev-parse", "HEAD").strip()
        self.sweep = self.client.create_run(run_name="sweep").id
        self.client.log_param(self.sweep, "search", "grid")
        self.client.set_terminated(self.sweep)

    def model_run(self, name: str, params: dict[str, Any], metrics: dict[str, float]) -> str:
        clf, features = iris_classifier()
        run = self.client.create_run(run_name=name, parent_run_id=self.sweep)
        for key, value in params.items():
            self.client.log_param(run.id, key, value)
        for key, number in metrics.items():
            self.client.log_metric(run.id, key, number)
        gitml.sklearn.log_model(clf, "model", input_example=features.head(2), run_id=run.id)
        self.client.set_terminated(run.id)
        return run.id

    def register(self, run_id: str) -> int:
        self.clock.advance(10)
        return int(self.registry.register(f"runs:/{run_id}/model", "churn").version)


@pytest.fixture
def project(repo: Path) -> Project:
    made = Project(repo)
    made.first = made.model_run("first", {"C": "1.0", "solver": "lbfgs"}, {"acc": 0.9, "f1": 0.8})
    (repo / "train.py").write_text("print('training, tuned')\n")  # dirty: a snapshot is made
    made.second = made.model_run(
        "second", {"C": "0.5", "solver": "lbfgs"}, {"acc": 0.95, "f1": 0.8, "loss": 0.1}
    )
    made.client.set_tag(made.second, "mlflow.datasets", DATASET_TAG)
    made.client.log_text(made.second, "a,b\n1,2\n", "datasets/train.csv")
    made.client.flush()
    assert made.register(made.first) == 1
    assert made.register(made.second) == 2
    return made


def test_lineage_of_a_version_reaches_run_code_snapshot_and_parent(project: Project) -> None:
    doc = lineage(project.client, "models:/churn/2")
    assert json.loads(json.dumps(doc)) == doc  # a plain, JSON-ready document
    assert (doc["kind"], doc["model"], doc["version"]) == ("model_version", "churn", 2)
    reg = doc["registration"]
    tip = git(project.repo, "rev-parse", "refs/gitml/models/churn").strip()
    assert reg["commit"] == tip and reg["author"] == "Ada <ada@example.com>"
    assert reg["time"] == "2023-11-14T22:13:40Z"
    run = doc["run"]
    assert run["id"] == project.second and run["name"] == "second"
    # The run's commit is the registration commit's second parent.
    parents = git(project.repo, "rev-list", "--parents", "-n1", tip).split()
    assert run["commit"] == parents[2]
    assert run["params"] == {"C": "0.5", "solver": "lbfgs"}
    assert run["metrics"] == {"acc": 0.95, "f1": 0.8, "loss": 0.1}
    code = run["code"]
    assert code["commit"] == project.code and code["subject"] == "initial"
    assert code["branch"] == "main" and code["dirty"] is True
    snapshot = code["snapshot"]
    assert snapshot is not None
    assert git(project.repo, "rev-parse", f"{snapshot}^").strip() == project.code
    assert git(project.repo, "show", f"{snapshot}:train.py") == "print('training, tuned')\n"
    first_parent = git(project.repo, "rev-parse", f"{run['first_commit']}^").strip()
    assert first_parent == snapshot  # the graph: run's first commit -> snapshot -> code
    assert run["datasets"] == [
        {
            "from": "tag mlflow.datasets",
            "name": "iris",
            "digest": "d41d8cd9",
            "source_type": "local",
            "source": "data/iris.csv",
        },
        {
            "from": "artifact",
            "name": "train.csv",
            "path": "datasets/train.csv",
            "digest": "sha256:" + __import__("hashlib").sha256(b"a,b\n1,2\n").hexdigest(),
            "size": 8,
        },
    ]
    parent = run["parent"]
    assert parent["id"] == project.sweep and parent["params"] == {"search": "grid"}
    assert parent["code"]["snapshot"] is None and parent["parent"] is None
    assert doc["stages"] == [] and doc["stage_history"] == []

    tree = render_tree(doc)
    lines = tree.splitlines()
    assert lines[0] == "model churn v2  models:/churn/2  READY"
    assert f"└── run {project.second[:12]} second  FINISHED" in tree
    assert "    ├── params\n    │   ├── C = 0.5\n    │   └── solver = lbfgs\n" in tree
    assert "    ├── metrics\n    │   ├── acc = 0.95\n" in tree
    assert f"├── digest {doc['digest'][:19]}  flavors python_function, sklearn\n" in tree
    assert f'code {project.code[:12]} "initial" on main' in tree
    assert f"dirty work tree: snapshot {snapshot[:12]}" in tree
    assert f"parent run {project.sweep[:12]} sweep  FINISHED" in tree
    assert "iris  source_type local  source data/iris.csv  digest d41d8cd9" in tree
    assert project.code not in tree and doc["digest"] not in tree  # short shas only


def test_lineage_of_a_clean_run_and_uri_forms(project: Project) -> None:
    doc = lineage(project.client, f"runs:/{project.first}")
    assert doc["kind"] == "run" and doc["code"]["snapshot"] is None
    assert doc["code"]["dirty"] is False and doc["datasets"] == []
    assert lineage(project.client, project.first[:8]) == doc
    assert lineage(project.client, "models:/churn/latest")["version"] == 2
    with pytest.raises(NotFound, match="no run with id 'ffff'"):
        lineage(project.client, "ffff")
    with pytest.raises(InvalidInput, match="expected models:/<name>/<version>, runs:/<run_id>"):
        lineage(project.client, "s3://bucket/model")
    with pytest.raises(NotFound, match="model 'churn' has no version 9"):
        lineage(project.client, "models:/churn/9")
    with pytest.raises(NotFound, match="stage 'production' has no branch gitml/production yet"):
        lineage(project.client, "stage:production")


def merge_proposal(repo: Path, stage: str, proposal: str) -> str:
    """Merge a proposal branch as a pull request would: a merge commit, no work tree."""
    tree = git(repo, "rev-parse", f"{proposal}^{{tree}}").strip()
    message = f"Merge branch '{proposal}' into gitml/{stage}"
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bob", "GIT_AUTHOR_EMAIL": "bob@example.com"}
    merge = git(
        repo, "commit-tree", tree, "-p", f"gitml/{stage}", "-p", proposal, "-m", message, env=env
    ).strip()
    git(repo, "update-ref", f"refs/heads/gitml/{stage}", merge)
    return merge


def test_lineage_of_a_stage_with_history_and_merge(project: Project) -> None:
    project.clock.advance(60)
    project.stages.assign("churn", 1, "production")
    project.clock.advance(60)
    proposal = project.stages.assign("churn", 2, "production", propose=True)
    branch_name = proposal.ref.removeprefix("refs/heads/")
    assert branch_name == "gitml/proposals/production/churn-v2"
    merge = merge_proposal(project.repo, "production", branch_name)

    doc = lineage(project.client, "stage:production")
    assert lineage(project.client, "gitml/production") == doc
    assert (doc["kind"], doc["stage"], doc["commit"]) == ("stage", "production", merge)
    (entry,) = doc["models"]
    assert entry["model"] == "churn" and entry["declared"] == "v2"
    declared_in = entry["declared_in"]
    assert declared_in["commit"] == merge and declared_in["change"] == "v1 -> v2"
    assert declared_in["merge"]["branch"] == branch_name
    assert declared_in["merge"]["commit"] == proposal.commit
    assert declared_in["merge"]["proposed_by"] == "Ada <ada@example.com>"
    assert declared_in["author"].startswith("Bob <bob@example.com>")
    (served,) = entry["served"]
    version = served["model_version"]
    assert served["weight"] == 100 and version["version"] == 2
    assert version["stages"] == [{"stage": "production", "weight": 100, "commit": merge}]
    assert [e["change"] for e in version["stage_history"]] == ["v1 -> v2"]
    v1 = lineage(project.client, "models:/churn/1")
    assert [e["change"] for e in v1["stage_history"]] == ["nothing -> v1", "v1 -> v2"]
    assert v1["stages"] == []

    tree = render_tree(doc)
    assert tree.splitlines()[0] == f"stage production  refs/heads/gitml/production @ {merge[:12]}"
    assert "└── churn: v2  declared " in tree and "100%  model churn v2" in tree
    assert f"of {branch_name}, proposed by Ada <ada@example.com>" in tree
    one = lineage(project.client, "stage:production/churn")
    assert one["models"] == doc["models"]
    with pytest.raises(NotFound, match="stage 'production' declares no version of 'other'"):
        lineage(project.client, "stage:production/other")
    assert lineage(project.client, "models:/churn@production")["version"] == 2
    text = describe_stage_change(project.store, "gitml/production", project.client.config)
    assert text.startswith("## gitml: production: churn v1 -> v2\n")
    assert f"**merges** `{branch_name}` (`{proposal.commit[:12]}`, proposed by Ada" in text
    assert metric_rows(text)["acc"] == ["0.9", "0.95", "+0.05 (+5.56%)"]


def metric_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    section = markdown.split("#### Metrics", 1)[1].split("####", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("metric", "---"):
            rows[cells[0]] = cells[1:]
    return rows


def test_describe_a_direct_stage_change(project: Project) -> None:
    project.stages.assign("churn", 1, "production")
    project.clock.advance(60)
    done = project.stages.assign("churn", 2, "production", message="better accuracy")
    text = describe_stage_change(project.store, "gitml/production", project.client.config)
    assert describe_stage_change(project.store, done.commit[:10], project.client.config) == text
    assert text.startswith("## gitml: production: churn v1 -> v2\n")
    assert f"**commit** `{done.commit[:12]}`" in text
    assert "> better accuracy" in text
    assert metric_rows(text) == {
        "acc": ["0.9", "0.95", "+0.05 (+5.56%)"],
        "f1": ["0.8", "0.8", "+0 (+0.00%)"],
        "loss": ["-", "0.1", "-"],
    }
    assert "| C | 1.0 | 0.5 |" in text and "| solver |" not in text
    v1 = project.registry.get_version("churn", 1)
    v2 = project.registry.get_version("churn", 2)
    assert f"| digest | `{v1.digest}` | `{v2.digest}` |" in text
    assert f"`{project.first[:12]}` first" in text and f"`{project.second[:12]}` second" in text
    assert f"| code | `{project.code[:12]}` initial | `{project.code[:12]}` initial (dirty" in text
    assert "gitml lineage models:/churn/1\ngitml lineage models:/churn/2\n" in text
    assert f"gitml lineage runs:/{project.second}\n" in text
    # The first assignment compares against nothing.
    first = git(project.repo, "rev-parse", "gitml/production^").strip()
    text = describe_stage_change(project.store, first, project.client.config)
    assert text.startswith("## gitml: production: churn nothing -> v1\n")
    assert metric_rows(text)["acc"] == ["-", "0.9", "-"]


def test_describe_a_proposal_branch_against_its_base(project: Project) -> None:
    project.stages.assign("churn", 1, "production")
    proposal = project.stages.assign("churn", 2, "production", propose=True)
    name = "gitml/proposals/production/churn-v2"
    text = describe_stage_change(project.store, name, project.client.config)
    assert text.startswith("## gitml: production: churn v1 -> v2\n")
    assert f"**proposal** `{name}` at `{proposal.commit[:12]}`" in text
    assert metric_rows(text)["acc"] == ["0.9", "0.95", "+0.05 (+5.56%)"]
    assert "has moved since" not in text
    # By sha, the proposal is found from its trailers and base.
    by_sha = describe_stage_change(project.store, proposal.commit, project.client.config)
    assert by_sha == text  # the branch whose tip it is names it
    # The stage moves on: the old side stays the base, and a note says what it declares now.
    project.clock.advance(60)
    project.stages.assign("churn", 2, "production", weight=10)
    moved = describe_stage_change(project.store, name, project.client.config)
    assert metric_rows(moved)["acc"] == ["0.9", "0.95", "+0.05 (+5.56%)"]
    assert "has moved since this proposal was made: it now declares v1 (90%) + v2 (10%)" in moved
    # A canary compares the version it brings in.
    canary = describe_stage_change(project.store, "gitml/production", project.client.config)
    assert canary.startswith("## gitml: production: churn v1 -> v1 (90%) + v2 (10%)\n")
    assert metric_rows(canary)["acc"] == ["0.9", "0.95", "+0.05 (+5.56%)"]


def test_describe_errors_are_precise(project: Project) -> None:
    config = project.client.config
    with pytest.raises(NotFound, match=r"^unknown revision 'nope': no branch, tag, ref or commit"):
        describe_stage_change(project.store, "nope", config)
    with pytest.raises(
        InvalidInput,
        match=rf"^'main' \({project.code[:12]}\) is not a stage change: it is on no "
        r"gitml/<stage> branch and carries no Gitml-Stage trailer",
    ):
        describe_stage_change(project.store, "main", config)
    run_ref = f"refs/gitml/runs/{project.first}"
    with pytest.raises(
        InvalidInput, match=rf"^'{run_ref}' \([0-9a-f]{{12}}\) is not a stage change"
    ):
        describe_stage_change(project.store, run_ref, config)
    with pytest.raises(NotFound, match=r"^unknown revision 'gitml/staging'"):
        describe_stage_change(project.store, "gitml/staging", config)


def test_store_resolve(project: Project) -> None:
    store = Store(project.repo)
    assert store.resolve("main") == store.resolve("HEAD") == project.code
    assert store.resolve("refs/heads/main") == store.resolve(project.code[:7]) == project.code
    assert store.resolve(f"gitml/runs/{project.first}") == store.tip(
        f"refs/gitml/runs/{project.first}"
    )
    git(project.repo, "tag", "-a", "v1", "-m", "annotated")
    assert store.resolve("v1") == project.code  # peeled to the commit
    tree = git(project.repo, "rev-parse", "HEAD^{tree}").strip()
    with pytest.raises(InvalidInput, match="names a tree, not a commit"):
        store.resolve(tree)
    with pytest.raises(InvalidInput, match="revision must be a non-empty string"):
        store.resolve(" ")


def test_cli_lineage_tree_json_and_errors(project: Project) -> None:
    out = cli("lineage", "models:/churn/1").output
    assert out.startswith("model churn v1  models:/churn/1  READY\n")
    doc = json.loads(cli("lineage", "--json", "models:/churn/1").output)
    assert doc == json.loads(json.dumps(Lineage(project.store, Config()).of_version("churn", 1)))
    line = one_error_line(cli("lineage", "models:/nope/1", ok=False))
    assert line == "error: no registered model 'nope'"


@pytest.mark.slow
def test_registry_benchmark_quick_runs(tmp_path: Path) -> None:
    out = run_benchmark(
        "registry.py", tmp_path, "--quick", "--versions", "20", "--processes", "1", "--no-mlflow"
    )
    assert "register a version, in process" in out
    assert "gitml stage show" in out

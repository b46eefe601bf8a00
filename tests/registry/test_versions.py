"""The registry: versions as commits on refs/gitml/models/<name>, and models:/ URIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gitml
import gitml.pyfunc
import gitml.sklearn
from gitml.errors import Conflict, Corrupt, InvalidInput, NotFound
from gitml.format import yamlio
from gitml.registry.stages import Stages
from gitml.registry.versions import (
    MODELS,
    Registry,
    model_digest,
    register_model,
    signature_summary,
)
from testing.git import FixedClock, commit_file_on_ref, fsck, git
from testing.procs import child_env, finish, spawn
from testing.registry import log_iris_run


@pytest.fixture
def client(repo: Path) -> gitml.Client:
    return gitml.Client(clock=FixedClock(), identity="Ada <ada@example.com>")


@pytest.fixture
def registry(client: gitml.Client) -> Registry:
    return Registry(client)


def test_register_records_the_version_and_merges_the_run(
    repo: Path, client: gitml.Client, registry: Registry
) -> None:
    run_id, _, _ = log_iris_run(client)
    uri = f"runs:/{run_id}/model"
    version = registry.register(uri, "churn", description="first", tags={"a": 1})
    assert (version.name, version.version, version.run_id) == ("churn", 1, run_id)
    assert version.source == f"runs:/{run_id}/model" and version.model_path == "model"
    assert version.flavors == ["python_function", "sklearn"]
    assert version.signature["inputs"].startswith("sepal length (cm): double")
    assert version.tags == {"a": "1"} and version.description == "first"
    assert version.status == "READY" and version.user

    tip = git(repo, "rev-parse", MODELS + "churn").strip()
    parents = git(repo, "rev-list", "--parents", "-n1", tip).split()[1:]
    run_tip = git(repo, "rev-parse", f"refs/gitml/runs/{run_id}").strip()
    assert parents[1] == version.run_commit == run_tip  # the run is the second parent
    message = git(repo, "log", "-1", "--format=%B", tip)
    assert message.startswith("gitml: register churn version 1 from run ")
    assert f"Gitml-Run: {run_id}" in message and "Gitml-Version: 1" in message
    stored = yamlio.load(git(repo, "show", f"{tip}:versions/1.yaml").encode())
    assert stored["digest"] == version.digest
    assert git(repo, "show", f"{tip}:model.yaml").startswith("name: churn\n")
    fsck(repo)


def test_digest_is_over_the_manifest_entries(client: gitml.Client, registry: Registry) -> None:
    run_id, _, _ = log_iris_run(client)
    version = registry.register(f"runs:/{run_id}/model", "churn")
    files = [(a.path[len("model/") :], a.sha256) for a in client.list_artifacts(run_id, "model")]
    assert version.digest == model_digest(files) == model_digest(reversed(files))
    assert model_digest(files[1:]) != version.digest


def test_numbers_are_consecutive_and_never_reused(client: gitml.Client, registry: Registry) -> None:
    run_id, _, _ = log_iris_run(client)
    uri = f"runs:/{run_id}/model"
    assert [registry.register(uri, "churn").version for _ in range(3)] == [1, 2, 3]
    registry.delete_version("churn", 3)
    assert registry.register(uri, "churn").version == 4
    assert [v.version for v in registry.versions("churn")] == [1, 2, 4]
    assert [v.version for v in registry.versions("churn", include_deleted=True)] == [1, 2, 3, 4]
    assert registry.get_version("churn", 3).status == "DELETED"
    assert registry.latest_version("churn").version == 4


def test_an_import_keeps_numbers_and_times_and_never_reuses_one(
    client: gitml.Client, registry: Registry
) -> None:
    run_id, _, _ = log_iris_run(client)
    uri = f"runs:/{run_id}/model"
    kept = registry.register(uri, "churn", version=3, creation_time=1234)
    assert (kept.version, kept.creation_time) == (3, 1234)
    assert registry.register(uri, "churn", version=1).version == 1  # a gap is free
    with pytest.raises(Conflict, match="already has a version 3"):
        registry.register(uri, "churn", version=3)
    assert registry.register(uri, "churn").version == 4
    assert [v.version for v in registry.versions("churn")] == [1, 3, 4]


def test_eight_processes_registering_at_once_get_distinct_numbers(
    repo: Path, client: gitml.Client
) -> None:
    run_id, _, _ = log_iris_run(client)
    script = """
        import sys, gitml
        for _ in range(5):
            print(gitml.register_model(sys.argv[1], "churn").version, flush=True)
    """
    procs = [spawn(script, repo, f"runs:/{run_id}/model", env=child_env()) for _ in range(8)]
    numbers = []
    for proc in procs:
        code, out, err = finish(proc)
        assert code == 0, err
        numbers += [int(line) for line in out.split()]
    assert sorted(numbers) == list(range(1, 41))
    listed = Registry(gitml.Client()).versions("churn")
    assert [v.version for v in listed] == list(range(1, 41))
    # Every registration is one commit: 40 of them plus the model's creation.
    assert git(repo, "rev-list", "--first-parent", "--count", MODELS + "churn").strip() == "41"
    fsck(repo)


def test_log_model_can_register(repo: Path) -> None:
    from testing.models import iris_classifier

    clf, _ = iris_classifier()
    with gitml.start_run():
        first = gitml.sklearn.log_model(clf, "model", registered_model_name="churn")
        second = gitml.sklearn.log_model(clf, "again", registered_model_name="churn")
    assert (first.registered_model_version, second.registered_model_version) == (1, 2)
    version = Registry(gitml.Client()).get_version("churn", 2)
    assert version.model_path == "again" and version.run_id == first.run_id
    plain = gitml.sklearn.log_model(clf, "plain", run_id=first.run_id)
    assert plain.registered_model_version is None


def test_models_uris_load_the_registered_files(client: gitml.Client, registry: Registry) -> None:
    run_id, clf, features = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    registry.register(f"runs:/{run_id}/model", "churn")
    stages = Stages(registry, client.config)
    stages.assign("churn", 1, "production")
    expected = clf.predict(features)
    for uri in (
        "models:/churn/1",
        "models:/churn/2",
        "models:/churn/latest",
        "models:/churn@production",
        "models:/churn/Production",  # MLflow 2's stage form
    ):
        np.testing.assert_array_equal(gitml.pyfunc.load_model(uri).predict(features), expected)
        np.testing.assert_array_equal(gitml.sklearn.load_model(uri).predict(features), expected)
    assert registry.resolve("models:/churn@production").version == 1
    assert registry.resolve("models:/churn/latest").version == 2


def test_a_canary_uri_names_the_version_taking_most_traffic(
    client: gitml.Client, registry: Registry
) -> None:
    run_id, _, _ = log_iris_run(client)
    for _ in range(2):
        registry.register(f"runs:/{run_id}/model", "churn")
    stages = Stages(registry, client.config)
    stages.assign("churn", 1, "production")
    stages.assign("churn", 2, "production", weight=10)
    assert registry.resolve("models:/churn@production").version == 1
    stages.assign("churn", 2, "production", weight=60)
    assert registry.resolve("models:/churn@production").version == 2


@pytest.mark.parametrize(
    ("uri", "error", "words"),
    [
        ("models:/churn", InvalidInput, "expected models:/<name>/<version>"),
        ("models:/churn/9", NotFound, "model 'churn' has no version 9"),
        ("models:/churn/3", NotFound, "version 3 of 'churn' was deleted"),
        ("models:/other/1", NotFound, "no registered model 'other'"),
        ("models:/churn@staging", NotFound, "stage 'staging' declares no version of 'churn'"),
        ("models:/churn@Bad Stage", InvalidInput, "use lowercase letters"),
        ("models:/a..b/1", InvalidInput, "model name 'a..b'"),
    ],
)
def test_bad_models_uris_say_what_is_wrong(
    client: gitml.Client, registry: Registry, uri: str, error: type[Exception], words: str
) -> None:
    run_id, _, _ = log_iris_run(client)
    for _ in range(3):
        registry.register(f"runs:/{run_id}/model", "churn")
    registry.delete_version("churn", 3)
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        gitml.pyfunc.load_model(uri)


def test_a_changed_model_file_fails_the_digest(
    repo: Path, client: gitml.Client, registry: Registry
) -> None:
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    ref = f"refs/gitml/runs/{run_id}"
    manifest = yamlio.load(git(repo, "show", f"{ref}:artifacts.yaml").encode())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["path"] != "model/MLmodel"]
    commit_file_on_ref(repo, ref, "artifacts.yaml", yamlio.dump(manifest).decode())
    with pytest.raises(Corrupt, match="no longer match the registered digest"):
        gitml.pyfunc.load_model("models:/churn/1")


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("./model", "a registered model comes from a run"),
        ("runs:/{run}/nothing", "has no model at 'nothing'"),
        ("runs:/{run}/model/MLmodel", "has no model at 'model/MLmodel'"),
        ("runs:/{run}/../model", "'..'"),
    ],
)
def test_register_refuses_what_is_not_a_logged_model(
    client: gitml.Client, registry: Registry, uri: str, words: str
) -> None:
    run_id, _, _ = log_iris_run(client)
    with pytest.raises(InvalidInput, match=words.replace(".", r"\.")):
        registry.register(uri.format(run=run_id), "churn")
    assert client.store.refs(MODELS) == {}


@pytest.mark.parametrize("name", ["a/b", "a..b", "x.lock", ".hidden", "", "sp ace", "n" * 201])
def test_model_names_must_make_a_ref(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidInput, match="model name"):
        registry.create_model(name)


def test_models_are_created_once_and_described(registry: Registry) -> None:
    registry.create_model("churn", description="who leaves", tags={"team": "growth"})
    with pytest.raises(Conflict, match="already exists"):
        registry.create_model("churn")
    changed = registry.update_model("churn", description="who stays", set_tags={"tier": 1})
    assert changed.description == "who stays" and changed.tags == {"team": "growth", "tier": "1"}
    assert registry.update_model("churn", delete_tags=["team"]).tags == {"tier": "1"}
    assert [m.name for m in registry.list_models()] == ["churn"]
    with pytest.raises(NotFound, match="no registered model 'other'"):
        registry.get_model("other")


def test_version_tags_and_descriptions(client: gitml.Client, registry: Registry) -> None:
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    tip = client.store.tip(MODELS + "churn")
    registry.update_version("churn", 1, description="d", set_tags={"validated": True})
    version = registry.get_version("churn", "1")
    assert (version.description, version.tags) == ("d", {"validated": "True"})
    again = client.store.tip(MODELS + "churn")
    registry.update_version("churn", 1, description="d")  # nothing changes: no commit
    assert client.store.tip(MODELS + "churn") == again != tip
    with pytest.raises(NotFound, match="has no version 2"):
        registry.update_version("churn", 2, description="x")
    for bad in (0, -1, "v1", True, 1.5):
        with pytest.raises(InvalidInput, match="positive integer"):
            registry.get_version("churn", bad)  # type: ignore[arg-type]


def test_a_malformed_version_file_names_ref_file_and_field(
    repo: Path, client: gitml.Client, registry: Registry
) -> None:
    run_id, _, _ = log_iris_run(client)
    registry.register(f"runs:/{run_id}/model", "churn")
    text = git(repo, "show", f"{MODELS}churn:versions/1.yaml").replace("version: 1", "version: 2")
    blob = git(repo, "hash-object", "-w", "--stdin", stdin=text).strip()
    new_versions = git(repo, "mktree", stdin=f"100644 blob {blob}\t1.yaml\n").strip()
    root = [
        ln
        for ln in git(repo, "ls-tree", f"{MODELS}churn").splitlines()
        if not ln.endswith("\tversions")
    ]
    root.append(f"040000 tree {new_versions}\tversions")
    new_root = git(repo, "mktree", stdin="\n".join(root) + "\n").strip()
    tip = git(repo, "rev-parse", f"{MODELS}churn").strip()
    commit = git(repo, "commit-tree", new_root, "-p", tip, "-m", "hand-edited").strip()
    git(repo, "update-ref", f"{MODELS}churn", commit, tip)
    with pytest.raises(gitml.InvalidRecord) as caught:
        registry.get_version("churn", 1)
    assert str(caught.value) == (
        f"{MODELS}churn:versions/1.yaml: field 'version': 2 does not match the file"
    )


def test_signature_summary() -> None:
    columns = json.dumps(
        [{"type": "double", "name": "a", "required": True}, {"type": "string", "name": "b"}]
    )
    tensor = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}])
    summary = signature_summary({"inputs": columns, "outputs": tensor, "params": None})
    assert summary == {"inputs": "a: double, b: string", "outputs": "tensor float32 (-1, 4)"}
    assert signature_summary(None) == {}
    assert signature_summary({"inputs": "not json"}) == {}
    wide = json.dumps([{"type": "double", "name": f"c{i}"} for i in range(200)])
    assert len(signature_summary({"inputs": wide})["inputs"]) == 500


def test_register_model_uses_the_fluent_client(repo: Path) -> None:
    client = gitml.Client()
    run_id, _, _ = log_iris_run(client)
    version = register_model(f"runs:/{run_id[:8]}/model", "churn", tags={"k": "v"})
    assert version.run_id == run_id and version.source == f"runs:/{run_id[:8]}/model"
    again = gitml.register_model("models:/churn/1", "churn-copy")
    assert (again.run_id, again.model_path, again.version) == (run_id, "model", 1)

"""gitml push/pull with a bucket as ``artifact_store``: only the missing artifacts move.

Two machines are two clones of one bare remote sharing one bucket, on a real
server of each provider on 127.0.0.1 (S3, Google Cloud Storage, Azure). Push
uploads from the local cache what the bucket lacks, and refuses when an
artifact is in neither; pull downloads into the cache what the pulled
records name and it lacks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import gitml
from gitml.artifacts import BucketStore
from gitml.git.store import Store
from gitml.registry.versions import Registry
from gitml.sharing import remote as sharing
from testing.cli import cli
from testing.git import git, init_repo
from testing.procs import write_config

RUNS = "refs/gitml/runs/"
THRESHOLD = 16


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "remote.git", bare=True)


@pytest.fixture
def a(tmp_path: Path, remote: Path) -> Path:
    path = init_repo(tmp_path / "a")
    git(path, "remote", "add", "origin", str(remote))
    git(path, "push", "-q", "origin", "main")
    return path


@pytest.fixture
def b(tmp_path: Path, remote: Path, a: Path) -> Path:
    git(tmp_path, "clone", "-q", str(remote), str(tmp_path / "b"))
    return tmp_path / "b"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The digests the bucket store sent (uploads) and was asked to download."""
    seen: dict[str, list[str]] = {"put": [], "copy_to": []}
    put, copy_to = BucketStore.put_absent, BucketStore.copy_to

    def counted_put(self: BucketStore, source: Path, sha256: str) -> None:
        seen["put"].append(sha256)
        put(self, source, sha256)

    def counted_copy_to(self: BucketStore, sha256: str, dest: Path, what: str) -> None:
        seen["copy_to"].append(sha256)
        copy_to(self, sha256, dest, what)

    monkeypatch.setattr(BucketStore, "put_absent", counted_put)
    monkeypatch.setattr(BucketStore, "copy_to", counted_copy_to)
    return seen


def use_bucket(repo: Path, provider: Any, bucket: str) -> None:
    write_config(repo, artifact_threshold=THRESHOLD, **provider.settings(bucket, "shared"))


def log(repo: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> str:
    """A finished run in ``repo`` with one text artifact per entry; its id."""
    monkeypatch.chdir(repo)
    client = gitml.Client(str(repo))
    try:
        run = client.create_run()
        for name, text in files.items():
            client.log_text(run.id, text, name)
        client.set_terminated(run.id)
        return run.id
    finally:
        client.close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cache(repo: Path, digest: str) -> Path:
    return repo / ".git" / "gitml" / "artifacts" / digest[:2] / digest[2:]


def key(digest: str) -> str:
    return f"shared/{digest[:2]}/{digest[2:]}"


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def push(repo: Path) -> sharing.PushReport:
    store = Store(repo)
    try:
        return sharing.push(store, "origin")
    finally:
        store.close()


MLMODEL = "flavors:\n  python_function:\n    loader_module: weights\n"


def test_push_uploads_only_what_the_bucket_lacks_and_pull_only_what_the_cache_lacks(
    a: Path,
    b: Path,
    provider: Any,
    bucket: str,
    calls: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Logged before the bucket was configured: the large artifacts are only in A's cache.
    write_config(a, artifact_threshold=THRESHOLD)
    w1, w2, w3 = ("one " * 10, "two " * 10, "three " * 10)
    first = log(a, monkeypatch, {"model/weights.bin": w1, "model/extra.bin": w2, "s.txt": "s"})
    second = log(a, monkeypatch, {"weights.bin": w3})
    monkeypatch.chdir(a)
    client = gitml.Client(str(a))
    client.log_text(first, MLMODEL, "model/MLmodel")
    Registry(client).register(f"runs:/{first}/model", "churn")
    client.close()
    # Someone else already uploaded w1 (marked, to see that it is not sent again).
    provider.put(bucket, key(sha(w1)), w1.encode())

    use_bucket(a, provider, bucket)
    report = push(a)
    assert report.problems == []
    sent = sorted([sha(w2), sha(w3), sha(MLMODEL)])  # the MLmodel is above the threshold too
    assert report.uploaded == sent
    assert sorted(calls["put"]) == sent  # one batch asked; w1 was not sent again
    assert f"uploaded 3 artifact(s) to {provider.url(bucket, 'shared')}" in report.notes
    assert provider.keys(bucket) == {key(sha(w)) for w in (w1, w2, w3, MLMODEL)}
    assert {RUNS + first, RUNS + second, "refs/gitml/models/churn"} <= set(refs(Path(a)))

    calls["put"].clear()
    assert push(a).uploaded == [] and calls["put"] == []  # nothing new: nothing sent

    # B already has w3 in its cache: only the others are downloaded.
    use_bucket(b, provider, bucket)
    cache(b, sha(w3)).parent.mkdir(parents=True)
    cache(b, sha(w3)).write_text(w3)
    monkeypatch.chdir(b)
    result = cli("pull", "--json")
    assert "downloaded 3 artifact(s)" in " ".join(json.loads(result.stdout)["notes"])
    assert sorted(calls["copy_to"]) == sorted([sha(w1), sha(w2), sha(MLMODEL)])
    assert cache(b, sha(w1)).read_text() == w1 and cache(b, sha(w2)).read_text() == w2
    client = gitml.Client(str(b))
    assert client.read_artifact(first, "model/weights.bin") == w1.encode()
    client.close()
    calls["copy_to"].clear()
    cli("pull")
    assert calls["copy_to"] == []


def test_push_is_refused_when_an_artifact_is_in_neither_place(
    a: Path, remote: Path, provider: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_bucket(a, provider, bucket)
    weights = "w" * 100
    run_id = log(a, monkeypatch, {"weights.bin": weights})
    small = log(a, monkeypatch, {"notes.txt": "small"})
    assert provider.keys(bucket) == {key(sha(weights))}  # uploaded when it was logged
    provider.delete(bucket, key(sha(weights)))
    cached = cache(a, sha(weights))
    hidden = cached.with_name("hidden")
    cached.rename(hidden)

    before = refs(remote)
    report = push(a)
    [problem] = report.problems
    assert f"run {run_id}: artifact 'weights.bin' (sha256 {sha(weights)})" in problem
    where = provider.url(bucket, "shared")
    assert f"neither in the artifact store {where} nor in {cached.parent.parent}" in problem
    assert refs(remote) == before and report.pushed == {} and report.uploaded == []
    assert RUNS + small not in refs(remote)

    hidden.rename(cached)  # back in the cache: push uploads it, then pushes the refs
    report = push(a)
    assert report.problems == [] and report.uploaded == [sha(weights)]
    assert RUNS + run_id in refs(remote) and provider.keys(bucket) == {key(sha(weights))}


def test_pull_reports_an_artifact_the_bucket_lacks(
    a: Path, b: Path, provider: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_bucket(a, provider, bucket)
    weights = "w" * 100
    run_id = log(a, monkeypatch, {"weights.bin": weights})
    assert push(a).problems == []
    provider.delete(bucket, key(sha(weights)))  # lost after the push

    use_bucket(b, provider, bucket)
    store = Store(b)
    try:
        report = sharing.pull(store, "origin")
    finally:
        store.close()
    [problem] = report.problems
    assert f"run {run_id}: artifact 'weights.bin' (sha256 {sha(weights)}) not downloaded" in problem
    assert "missing from the artifact store" in problem
    assert RUNS + run_id in report.updated  # the record itself is fine and applied
    assert not cache(b, sha(weights)).exists()

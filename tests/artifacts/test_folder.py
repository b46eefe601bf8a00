"""Artifact paths and the external, content-addressed artifact store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import gitml
import gitml.pyfunc
from gitml.artifacts import folder as artifacts
from gitml.artifacts.folder import ExternalStore
from gitml.errors import Corrupt, InvalidInput, InvalidRecord, NotFound
from gitml.format.paths import clean_path, join
from testing.artifacts import add_manifest_entry, external_model_run
from testing.procs import write_config


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("model.pkl", "model.pkl"),
        ("model/model.pkl", "model/model.pkl"),
        ("a/./b", "a/b"),
        ("a//b", "a/b"),
        ("dir/", "dir"),
        ("./x", "x"),
        ("a..b/c", "a..b/c"),
        (".hidden", ".hidden"),
        ("my.git/x", "my.git/x"),
        ("réseau ✓.png", "réseau ✓.png"),
    ],
)
def test_clean_paths(path: str, clean: str) -> None:
    assert clean_path(path) == clean


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("..", "escapes"),
        ("../x", "escapes"),
        ("a/../../x", "escapes"),
        ("a/../b", "escapes"),
        ("/etc/passwd", "absolute"),
        ("//server/share", "absolute"),
        ("C:/x", "absolute"),
        ("c:x", "absolute"),
        ("a\\b", "backslash"),
        ("..\\x", "backslash"),
        ("nul\0byte", "NUL"),
        ("", "non-empty"),
        (".", "does not name a file"),
        ("./", "does not name a file"),
        (".git", "reserved"),
        (".git/config", "reserved"),
        ("a/.git/hooks/pre-commit", "reserved"),
        ("x/.gitml", "reserved"),
    ],
)
def test_bad_paths_are_rejected(path: str, rule: str) -> None:
    with pytest.raises(InvalidInput, match=rule) as info:
        clean_path(path)
    assert repr(path) in str(info.value) or path == ""


@pytest.mark.parametrize("path", [None, 5, b"model.pkl", Path("model.pkl")])
def test_a_path_must_be_a_string(path: Any) -> None:
    with pytest.raises(InvalidInput, match="non-empty string"):
        clean_path(path)


def test_join_puts_a_name_under_an_artifact_path() -> None:
    assert join(None, "m.pkl") == "m.pkl"
    assert join("model", "m.pkl") == "model/m.pkl"
    assert join("model/", "m.pkl") == "model/m.pkl"
    for bad in ["..", "/model", ".git"]:
        with pytest.raises(InvalidInput):
            join(bad, "m.pkl")


def test_digest_file(tmp_path: Path) -> None:
    data = b"x" * (artifacts.CHUNK * 2 + 7)  # spans several read blocks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert artifacts.digest_file(path) == (sha(data), len(data))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert artifacts.digest_file(empty) == (sha(b""), 0)


def test_verify() -> None:
    assert artifacts.verify(b"abc", sha(b"abc"), "x") == b"abc"
    with pytest.raises(Corrupt, match="the manifest says"):
        artifacts.verify(b"abd", sha(b"abc"), "run r artifact 'x'")


# -- the external store --------------------------------------------------------------


@pytest.fixture
def external(tmp_path: Path) -> ExternalStore:
    return ExternalStore(tmp_path / "store")


def stored(external: ExternalStore, digest: str) -> Path:
    return external.root / digest[:2] / digest[2:]


def test_put_read_and_copy_to(external: ExternalStore, tmp_path: Path) -> None:
    data = b"weights" * 1000
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    digest = sha(data)

    external.put(source, digest)
    external.put(source, digest)  # idempotent

    assert stored(external, digest).read_bytes() == data
    assert [p.name for p in stored(external, digest).parent.iterdir()] == [digest[2:]]
    assert external.read(digest, "m") == data
    dest = tmp_path / "out" / "deep" / "model.bin"
    external.copy_to(digest, dest, "m")
    assert dest.read_bytes() == data
    assert not dest.with_name("model.bin.partial").exists()


def test_put_bytes(external: ExternalStore) -> None:
    external.put_bytes(b"payload", sha(b"payload"))
    assert external.read(sha(b"payload"), "m") == b"payload"


def test_put_rejects_content_that_does_not_match_its_name(
    external: ExternalStore, tmp_path: Path
) -> None:
    # e.g. a checkpoint rewritten between hashing and storing it: a file under
    # the wrong name would poison the store for every run that shares it.
    source = tmp_path / "model.bin"
    source.write_bytes(b"changed after hashing")
    wrong = sha(b"what was hashed")
    with pytest.raises(Corrupt, match=wrong):
        external.put(source, wrong)
    with pytest.raises(Corrupt):
        external.put_bytes(b"other", wrong)
    assert not stored(external, wrong).exists()
    assert [p.name for p in external.root.rglob("*") if p.is_file()] == []


def test_tampered_content_is_corrupt(external: ExternalStore, tmp_path: Path) -> None:
    data = b"the real model"
    digest = sha(data)
    external.put_bytes(data, digest)
    path = stored(external, digest)
    path.chmod(0o644)
    path.write_bytes(b"the evil model")

    with pytest.raises(Corrupt, match=digest) as info:
        external.read(digest, "run abc artifact 'model.bin'")
    assert "run abc artifact 'model.bin'" in str(info.value)

    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(Corrupt, match=r"run abc artifact 'model\.bin'"):
        external.copy_to(digest, dest, "run abc artifact 'model.bin'")
    assert not dest.exists()
    assert not dest.with_name("model.bin.partial").exists()


def test_a_tampered_copy_does_not_replace_an_existing_file(
    external: ExternalStore, tmp_path: Path
) -> None:
    digest = sha(b"good")
    external.put_bytes(b"good", digest)
    stored(external, digest).chmod(0o644)
    stored(external, digest).write_bytes(b"bad!")
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"what the user had")
    with pytest.raises(Corrupt):
        external.copy_to(digest, dest, "m")
    assert dest.read_bytes() == b"what the user had"


def test_missing_content_is_not_found(external: ExternalStore, tmp_path: Path) -> None:
    digest = sha(b"never stored")
    with pytest.raises(NotFound, match="missing from the artifact store") as info:
        external.read(digest, "run abc artifact 'm'")
    assert digest in str(info.value) and "run abc artifact 'm'" in str(info.value)
    with pytest.raises(NotFound, match=digest):
        external.copy_to(digest, tmp_path / "x", "m")
    assert not (tmp_path / "x").exists()


# -- manifests edited by hand ------------------------------------------------------------


@pytest.mark.parametrize("escaping", ["model/../../outside.txt", "model/../../../../outside.txt"])
def test_a_manifest_path_that_escapes_is_refused_by_every_reader(
    repo: Path, tmp_path: Path, escaping: str
) -> None:
    write_config(repo, artifact_threshold=0)
    client = gitml.Client()
    run_id = external_model_run(client)
    add_manifest_entry(repo, run_id, escaping)
    destination = tmp_path / "a" / "b" / "c" / "download"
    destination.mkdir(parents=True)

    for read in [
        lambda: client.list_artifacts(run_id),
        lambda: client.download_artifacts(run_id, "model", destination),
        lambda: gitml.pyfunc.load_model(f"runs:/{run_id}/model"),
    ]:
        with pytest.raises(InvalidRecord) as error:
            read()
        assert (error.value.path, error.value.field) == ("artifacts.yaml", "artifacts.1.path")
        assert error.value.reason == (
            f"artifact path '{escaping}' escapes the run's artifact root ('..')"
        )
    assert list(tmp_path.rglob("outside.txt")) == []


def test_a_download_does_not_write_through_a_symlink_in_the_destination(
    repo: Path, tmp_path: Path
) -> None:
    client = gitml.Client()
    run = client.create_run()
    client.log_text(run.id, "weights", "model/w.txt")
    destination = tmp_path / "download"
    destination.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (destination / "model").symlink_to(elsewhere)
    with pytest.raises(InvalidInput, match=f"'model/w.txt' leads outside {destination}"):
        client.download_artifacts(run.id, "model", destination)
    assert list(elsewhere.iterdir()) == []

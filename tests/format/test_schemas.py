"""gitml.format.schemas (where the schemas are, what they report) and gitml.registry.validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from gitml.format import schemas
from gitml.format.records import Experiment, Run
from gitml.git.store import Change, Store
from gitml.registry.validate import validate_files, validate_refs
from testing.git import FixedClock

RUN_ID = "0123456789abcdef0123456789abcdef"
GOOD_RUN = Run(
    id=RUN_ID, experiment_id="0", name="r", status="RUNNING", start_time=1, user="u"
).to_yaml()
GOOD_EXPERIMENT = Experiment(id="0", name="Default", creation_time=0).to_yaml()


def test_schema_dir_holds_a_schema_for_every_kind() -> None:
    folder = schemas.schema_dir()
    assert folder.is_dir()
    for kind in schemas.KINDS.values():
        path = folder / f"{kind}.schema.json"
        assert path.is_file(), path
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schemas.load(kind) == schema


def test_errors_name_every_bad_field_in_order() -> None:
    document = {"id": "nope", "experiment_id": "0", "name": "", "status": "DONE", "user": "u"}
    found = schemas.errors("run", document, where="refs/gitml/runs/x", path="run.yaml")
    fields = [e.field for e in found]
    assert fields == ["(document)", "id", "name", "status"]
    assert "start_time" in found[0].reason  # a missing field is reported on the document
    assert all((e.where, e.path) == ("refs/gitml/runs/x", "run.yaml") for e in found)


def test_check_bytes_reports_yaml_errors_as_one_document_problem() -> None:
    found = schemas.check_bytes("config", b"flush_interval: [1\n", where="", path=".gitml.yaml")
    assert len(found) == 1
    assert found[0].field == "(document)"
    assert "not valid YAML" in found[0].reason


# -- gitml.registry.validate on files -------------------------------------------------------


def test_validate_files_accepts_good_records(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_bytes(GOOD_RUN)
    (tmp_path / "experiment.yaml").write_bytes(GOOD_EXPERIMENT)
    (tmp_path / ".gitml.yaml").write_bytes(b"flush_interval: 1.5\n")
    (tmp_path / "artifacts.yaml").write_bytes(b"artifacts: []\n")
    assert validate_files(sorted(tmp_path.iterdir())) == []


def test_validate_files_reports_file_field_and_reason(tmp_path: Path) -> None:
    bad_run = tmp_path / "a" / "run.yaml"
    bad_run.parent.mkdir()
    bad_run.write_bytes(GOOD_RUN.replace(b"RUNNING", b"DONE") + b"colour: red\n")
    bad_config = tmp_path / ".gitml.yaml"
    bad_config.write_bytes(b"flush_points: 0\n")
    manifest = tmp_path / "artifacts.yaml"
    manifest.write_bytes(b"artifacts:\n- path: m.pkl\n  sha256: abc\n  size: -1\n")

    found = validate_files([bad_run, bad_config, manifest])

    described = [(p.path, p.field) for p in found]
    assert described == [
        (str(bad_run), "(document)"),  # the unknown field
        (str(bad_run), "status"),
        (str(bad_config), "flush_points"),
        (str(manifest), "artifacts.0.sha256"),
        (str(manifest), "artifacts.0.size"),
    ]
    assert "colour" in found[0].reason
    assert "DONE" in found[1].reason
    assert str(found[2]).startswith(f"{bad_config}: field 'flush_points': ")
    assert all(p.where == "" for p in found)


def test_validate_files_skips_names_it_does_not_know(tmp_path: Path) -> None:
    notes = tmp_path / "notes.yaml"
    notes.write_bytes(b": not yaml at all [\n")
    runs = tmp_path / "run.yml"  # not the name gitml writes
    runs.write_bytes(b"status: DONE\n")
    assert validate_files([notes, runs]) == []


def test_validate_files_reports_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_bytes(b"id: [0\n")
    [problem] = validate_files([path])
    assert (problem.path, problem.field) == (str(path), "(document)")
    assert "not valid YAML" in problem.reason


# -- gitml.registry.validate on refs --------------------------------------------------------


@pytest.fixture
def store(repo: Path) -> Store:
    return Store(repo, clock=FixedClock(), identity="Bot <bot@example.com>")


def write(store: Store, ref: str, files: dict[str, bytes]) -> None:
    store.update(ref, lambda snap: Change(dict(files)), f"write {ref}")


def test_validate_refs_accepts_good_records(store: Store) -> None:
    write(store, f"refs/gitml/runs/{RUN_ID}", {"run.yaml": GOOD_RUN})
    write(store, "refs/gitml/experiments/0", {"experiment.yaml": GOOD_EXPERIMENT})
    assert validate_refs(store) == []


def test_validate_refs_names_ref_file_and_field(store: Store) -> None:
    good = f"refs/gitml/runs/{RUN_ID}"
    bad = "refs/gitml/runs/" + "b" * 32
    empty = "refs/gitml/runs/" + "c" * 32
    write(store, good, {"run.yaml": GOOD_RUN})
    write(
        store,
        bad,
        {
            "run.yaml": GOOD_RUN.replace(b"start_time: 1", b"start_time: -1"),
            "artifacts.yaml": b"artifacts:\n- path: a/../x\n  sha256: "
            + b"a" * 64
            + b"\n  size: 1\n",
        },
    )
    write(store, empty, {"notes.txt": b"no record here"})
    write(store, "refs/gitml/experiments/1", {"experiment.yaml": b"id: 1\nname: x\n"})
    write(store, "refs/gitml/other/x", {"run.yaml": b"not: checked\n"})

    found = validate_refs(store)

    assert [(p.where, p.path, p.field) for p in found] == [
        (bad, "run.yaml", "start_time"),
        (bad, "artifacts.yaml", "artifacts.0.path"),
        (empty, "run.yaml", "(document)"),
        ("refs/gitml/experiments/1", "experiment.yaml", "(document)"),
        ("refs/gitml/experiments/1", "experiment.yaml", "id"),
    ]
    assert "-1" in found[0].reason
    assert found[2].reason == "file is missing"
    assert "creation_time" in found[3].reason
    assert str(found[0]).startswith(f"{bad}:run.yaml: field 'start_time': ")


def test_validate_refs_on_an_empty_repository(store: Store) -> None:
    assert validate_refs(store) == []

"""The MLproject format: MLflow's own examples load as MLflow loads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitml.errors import GitmlError, InvalidInput, InvalidRecord, NotFound
from gitml.format import schemas
from gitml.projects.spec import MLproject, find_spec_file, load_project, read_spec
from gitml.registry.validate import validate_files
from testing.projects import COMPAT, write_project

SOURCES = json.loads((COMPAT / "SOURCES.json").read_text()) if COMPAT.is_dir() else {"projects": []}
FOLDERS = [p["folder"] for p in SOURCES["projects"]]
# The corpus projects MLflow's own loader refuses too, and why.
REFUSED = {
    "bigml__bigml_linear": "conda.yaml",  # the env file it names is missing
    "tests-resources__example_yarn_project": "conda.yaml",  # likewise
    "tests-resources__example_docker_project__MLproject_dockerfile": "image",  # no image
}

needs_compat = pytest.mark.skipif(not COMPAT.is_dir(), reason="no ../shared/compat folder")


def test_the_corpus_is_all_there() -> None:
    if not COMPAT.is_dir():
        pytest.skip("no ../shared/compat folder")
    assert len(FOLDERS) == 55
    assert set(REFUSED) <= set(FOLDERS)
    for folder in FOLDERS:
        assert find_spec_file(COMPAT / folder) is not None, folder


@needs_compat
@pytest.mark.parametrize("folder", [f for f in FOLDERS if f not in REFUSED])
def test_every_project_mlflow_accepts_loads_and_validates(folder: str) -> None:
    spec_file = find_spec_file(COMPAT / folder)
    assert spec_file is not None
    assert (
        schemas.check_bytes("MLproject", spec_file.read_bytes(), where="", path="MLproject") == []
    )
    read_spec(spec_file)
    project = load_project(COMPAT / folder)
    assert project.entry_points


@needs_compat
@pytest.mark.parametrize(("folder", "reason"), sorted(REFUSED.items()))
def test_the_projects_mlflow_refuses_are_refused(folder: str, reason: str) -> None:
    with pytest.raises(GitmlError, match=reason):
        load_project(COMPAT / folder)


@needs_compat
def test_gitml_validate_refuses_exactly_what_mlflow_refuses() -> None:
    for folder in FOLDERS:
        spec_file = find_spec_file(COMPAT / folder)
        assert spec_file is not None
        found = validate_files([spec_file])
        if folder not in REFUSED:
            assert found == [], (folder, [str(p) for p in found])
            continue
        [problem] = found
        assert problem.path == str(spec_file)
        assert REFUSED[folder] in str(problem), str(problem)
    where = COMPAT / "bigml__bigml_linear"
    [problem] = validate_files([where / "MLproject"])
    assert str(problem) == (
        f"{where}/MLproject: field 'conda_env': "
        f"names conda.yaml, but there is no such file in {where}"
    )


def test_gitml_validate_refuses_a_missing_python_env_file(tmp_path: Path) -> None:
    spec = "python_env: envs/python_env.yaml\nentry_points: {main: {command: x}}\n"
    root = write_project(tmp_path, spec)
    [problem] = validate_files([root / "MLproject"])
    assert (problem.field, problem.reason) == (
        "python_env",
        f"names envs/python_env.yaml, but there is no such file in {root}",
    )
    write_project(root, None, **{"envs__python_env.yaml": "python: '3.11'\n"})
    assert validate_files([root / "MLproject"]) == []


@needs_compat
def test_the_file_without_an_image_fails_the_schema_and_the_others_pass_it() -> None:
    # The two with a missing conda.yaml are valid files; only loading them fails.
    for folder, expect_errors in [
        ("tests-resources__example_docker_project__MLproject_dockerfile", True),
        ("bigml__bigml_linear", False),
    ]:
        data = (COMPAT / folder / "MLproject").read_bytes()
        found = schemas.check_bytes("MLproject", data, where="", path="MLproject")
        assert bool(found) is expect_errors
        if found:
            assert found[0].field == "docker_env"


@needs_compat
def test_gitml_reads_entry_points_and_parameters_as_mlflow_does() -> None:
    spec = pytest.importorskip("mlflow.projects._project_spec")
    for folder in FOLDERS:
        if folder in REFUSED:
            with pytest.raises(Exception):  # noqa: B017 - MLflow's own exception types vary
                spec.load_project(str(COMPAT / folder))
            continue
        theirs = spec.load_project(str(COMPAT / folder))
        ours = load_project(COMPAT / folder)
        assert ours.name == theirs.name, folder
        assert set(ours.entry_points) == set(theirs._entry_points), folder
        for name, entry in ours.entry_points.items():
            their_entry = theirs._entry_points[name]
            assert entry.command == their_entry.command
            assert list(entry.parameters) == list(their_entry.parameters)
            for key, param in entry.parameters.items():
                their_param = their_entry.parameters[key]
                assert param.type == their_param.type, (folder, name, key)
                expected = None if their_param.default is None else str(their_param.default)
                assert param.default == expected, (folder, name, key)
        assert (ours.env or "python_env") == theirs.env_type, folder


@needs_compat
def test_a_file_named_mlproject_in_any_case_is_found() -> None:
    found = find_spec_file(COMPAT / "tensorflow__MLProject")
    assert found is not None and found.name == "MLProject"
    assert load_project(COMPAT / "tensorflow__MLProject").spec_file == found


@needs_compat
def test_crlf_files_load() -> None:
    assert b"\r\n" in (COMPAT / "statsmodels" / "MLproject").read_bytes()
    assert load_project(COMPAT / "statsmodels").entry_points


def test_gitml_validate_checks_mlproject_files(tmp_path: Path) -> None:
    good = write_project(tmp_path / "good", "entry_points: {main: {command: 'python x.py'}}\n")
    bad = write_project(tmp_path / "bad", "entry_points: {main: {parameters: {a: 1}}}\n")
    assert validate_files([good / "MLproject"]) == []
    problems = validate_files([bad / "MLproject"])
    assert problems and all(p.path.endswith("MLproject") for p in problems)
    assert {p.field for p in problems} >= {"entry_points.main"}


# -- the format's rules ----------------------------------------------------------------


def _spec(document: dict[str, Any]) -> MLproject:
    return MLproject.model_validate(document)


@pytest.mark.parametrize(
    "document",
    [
        {"python_env": "p.yaml", "conda_env": "c.yaml"},
        {"docker_env": {"image": "x"}, "python_env": "p.yaml"},
        {"docker_env": {}},
        {"docker_env": {"image": "x", "volumes": "/a:/a"}},
        {"docker_env": {"image": "x", "environment": [["ONLY_NAME"]]}},
        {"entry_points": {"main": {}}},
        {"entry_points": {"main": {"command": "x", "parameters": {"a": None}}}},
        {"entry_points": {"main": {"command": "x", "parameters": {"a": {"type": 3}}}}},
        {"entry_points": {"main": {"command": "x", "parameters": {"a": {"default": [1]}}}}},
    ],
)
def test_malformed_documents_fail_both_schema_and_model(document: dict[str, Any]) -> None:
    assert schemas.errors("MLproject", document, where="", path="MLproject")
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        _spec(document)


def test_parameters_take_both_forms_and_unknown_keys_are_kept(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        """
        name: demo
        kubernetes_env: {job_namespace: ml}
        entry_points:
          main:
            parameters:
              alpha: float
              beta: {type: int, default: 3}
              gamma: {default: hello}
              flag: {type bool, default: True}
            command: "python t.py {alpha} {beta} {gamma}"
        """,
    )
    project = load_project(tmp_path)
    params = project.entry_point("main").parameters
    assert (params["alpha"].type, params["alpha"].default) == ("float", None)
    assert (params["beta"].type, params["beta"].default) == ("int", "3")
    assert (params["gamma"].type, params["gamma"].default) == ("string", "hello")
    assert (params["flag"].type, params["flag"].default) == ("string", "True")


def test_without_mlproject_the_env_files_decide(tmp_path: Path) -> None:
    write_project(tmp_path / "a", None, **{"python_env.yaml": "python: '3.11'\n", "t.py": ""})
    write_project(tmp_path / "b", None, **{"conda.yaml": "dependencies: []\n", "t.py": ""})
    write_project(tmp_path / "c", None, **{"t.py": ""})
    assert load_project(tmp_path / "a").env == "python_env"
    assert load_project(tmp_path / "b").env == "conda_env"
    assert load_project(tmp_path / "c").env is None
    assert load_project(tmp_path / "c").entry_points == {}


def test_py_and_sh_files_are_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, None, **{"train.py": "", "go.sh": "", "my data.py": ""})
    monkeypatch.setenv("SHELL", "/bin/zsh")
    project = load_project(tmp_path)
    assert project.entry_point("train.py").command == "python train.py"
    assert project.entry_point("go.sh").command == "/bin/zsh go.sh"
    assert project.entry_point("my data.py").command == "python 'my data.py'"
    with pytest.raises(NotFound, match="declared: none"):
        project.entry_point("main")
    with pytest.raises(NotFound, match="no such file"):
        project.entry_point("missing.py")


def test_a_named_env_file_must_exist(tmp_path: Path) -> None:
    write_project(tmp_path, "python_env: env.yaml\nentry_points: {main: {command: x}}\n")
    with pytest.raises(InvalidInput, match=r"env\.yaml"):
        load_project(tmp_path)


def test_a_bad_file_names_the_file_and_field(tmp_path: Path) -> None:
    write_project(tmp_path, "entry_points:\n  main:\n    command: 5\n")
    with pytest.raises(InvalidRecord) as err:
        load_project(tmp_path)
    assert err.value.field == "entry_points.main.command"
    assert str(tmp_path / "MLproject") in str(err.value)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        load_project(tmp_path / "nowhere")

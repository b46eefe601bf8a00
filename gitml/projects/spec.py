"""The ``MLproject`` file, as MLflow documents it, and loading a project directory.

MLflow reads the file without a schema and ignores what it does not know, so
``kubernetes_env``, a docker image's ``namespace`` or a parameter written
``{type str, default: x}`` (a YAML key ``type str``) all load there; gitml
keeps unknown keys for the same reason and checks the structure of the keys
it uses (``schemas/MLproject.schema.json``). A parameter type other than
float, int, string, path and uri (``bool``, ``str`` in MLflow's own examples)
is a label, and its values are taken as strings, as MLflow takes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from gitml.errors import InvalidInput, NotFound
from gitml.format.records import Record, parse

MLPROJECT = "MLproject"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
DEFAULT_ENTRY_POINT = "main"
ENV_KEYS = ("python_env", "conda_env", "docker_env")


class ParameterSpec(Record):
    """``name: {type: float, default: 0.1}``; without a default the parameter is required."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    type: str = Field(default="string", min_length=1)
    default: str | int | float | bool | None = None


class EntryPointSpec(Record):
    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    parameters: dict[str, str | ParameterSpec] = Field(default_factory=dict)
    command: str = Field(min_length=1)


class DockerEnv(Record):
    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    image: str = Field(min_length=1)
    volumes: list[str] = Field(default_factory=list)
    environment: list[str | list[str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pairs(self) -> DockerEnv:
        for item in self.environment:
            if isinstance(item, list) and len(item) != 2:
                raise ValueError("environment: each list must be [NAME, value]")
        return self


class MLproject(Record):
    """The ``MLproject`` file. Unknown keys are kept, as MLflow ignores them."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    name: str | None = None
    python_env: str | None = Field(default=None, min_length=1)
    conda_env: str | None = Field(default=None, min_length=1)
    docker_env: DockerEnv | None = None
    entry_points: dict[str, EntryPointSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _one_environment(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [key for key in ENV_KEYS if key in data]
            if len(given) > 1:
                raise ValueError(f"at most one of python_env, conda_env, docker_env; got {given}")
        return data

    def to_plain(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude_none=True)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None  # as a string, the way it goes into the command; None: required


@dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """A loaded project: where it is, its environment and its entry points."""

    directory: Path
    name: str | None
    env: str | None  # "python_env", "conda_env", "docker_env", or None (no file names one)
    env_file: Path | None  # python_env.yaml or conda.yaml, when there is one
    docker: DockerEnv | None
    entry_points: dict[str, EntryPoint]
    spec_file: Path | None  # the MLproject file, None for a bare directory

    def entry_point(self, name: str) -> EntryPoint:
        """A declared entry point, or a ``.py``/``.sh`` file run as MLflow runs it."""
        if name in self.entry_points:
            return self.entry_points[name]
        suffix = Path(name).suffix
        if suffix in (".py", ".sh"):
            import shlex

            if not (self.directory / name).is_file():
                raise NotFound(f"entry point {name!r}: no such file in {self.directory}")
            runner = "python" if suffix == ".py" else os.environ.get("SHELL") or "bash"
            return EntryPoint(name, f"{runner} {shlex.quote(name)}")
        declared = ", ".join(sorted(self.entry_points)) or "none"
        raise NotFound(
            f"entry point {name!r} is not in {self.spec_file or self.directory} "
            f"(declared: {declared}) and is not a .py or .sh file to run"
        )


def _default_string(value: str | int | float | bool | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)  # what MLflow's str() gives: True, False
    return str(value)


def _entry_points(spec: MLproject) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for name, entry in spec.entry_points.items():
        params: dict[str, Parameter] = {}
        for key, value in entry.parameters.items():
            if isinstance(value, str):
                params[key] = Parameter(key, value, None)
            else:
                params[key] = Parameter(key, value.type, _default_string(value.default))
        found[name] = EntryPoint(name, entry.command, params)
    return found


def find_spec_file(directory: Path) -> Path | None:
    """``MLproject`` in ``directory``, matched without regard to case, as MLflow does."""
    exact = directory / MLPROJECT
    if exact.is_file():
        return exact
    for child in sorted(directory.iterdir()):
        if child.name.lower() == MLPROJECT.lower() and child.is_file():
            return child
    return None


def read_spec(path: Path) -> MLproject:
    """Parse and validate an ``MLproject`` file; errors name the file and the field."""
    return parse(MLproject, path.read_bytes(), where="", path=str(path))


def missing_environment_file(spec: MLproject, root: Path) -> tuple[str, str] | None:
    """(the key, why) when the environment file ``spec`` names is not in ``root``;
    None when it is there or none is named. MLflow refuses to load such a project."""
    for key, named in (("python_env", spec.python_env), ("conda_env", spec.conda_env)):
        if named is not None and not (root / named).is_file():
            return key, f"names {named}, but there is no such file in {root}"
    return None


def load_project(directory: str | os.PathLike[str]) -> Project:
    """The project in ``directory``: its ``MLproject`` file or, without one, the defaults.

    As MLflow: the environment file a project names must exist; without an
    ``MLproject`` (or without an environment in it) a ``python_env.yaml``, then
    a ``conda.yaml`` beside it is the environment.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise NotFound(f"project directory {root} does not exist")
    spec_file = find_spec_file(root)
    spec = read_spec(spec_file) if spec_file is not None else MLproject()
    env: str | None = None
    env_file: Path | None = None
    if spec.docker_env is not None:
        env = "docker_env"
    elif spec.python_env is not None or spec.conda_env is not None:
        env = "python_env" if spec.python_env is not None else "conda_env"
        missing = missing_environment_file(spec, root)
        if missing is not None:
            raise InvalidInput(f"{spec_file}: {' '.join(missing)}")
        env_file = root / (spec.python_env or spec.conda_env or "")
    elif (root / PYTHON_ENV_FILE).is_file():
        env, env_file = "python_env", root / PYTHON_ENV_FILE
    elif (root / CONDA_ENV_FILE).is_file():
        env, env_file = "conda_env", root / CONDA_ENV_FILE
    return Project(
        directory=root,
        name=spec.name,
        env=env,
        env_file=env_file,
        docker=spec.docker_env,
        entry_points=_entry_points(spec),
        spec_file=spec_file,
    )

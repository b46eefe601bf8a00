"""Where a project's command runs: this interpreter, a cached venv, conda, or docker.

- ``local``: the current interpreter (its folder first on ``PATH``, so ``python``
  is this Python).
- ``virtualenv`` / ``uv``: a venv built from ``python_env.yaml`` (or
  ``requirements.txt``, or a ``conda.yaml``'s pip section, as MLflow converts
  it) and cached under ``~/.cache/gitml/envs/<hash>`` by the hash of that
  specification, of the Python version and of the running gitml, so the second
  run starts at once.
  The venv is made without pip (``python -m venv --without-pip``, 0.3 s
  instead of 12 s) and filled by this interpreter's pip (``pip --python``):
  first the running gitml and its dependencies (``runtime``), then the project's
  requirements. A conda env gets the same gitml after ``conda env create``.
- ``conda`` and ``docker``: run when their tools are present, and otherwise
  fail before a run is created, saying what is missing.

A venv cannot move once built (its scripts name its folder), so "build then
rename" is done with a symlink: each build goes into its own folder
``<hash>.<random>`` and the link ``<hash>`` is switched to it atomically
(``os.replace``) once it is complete; a crashed build is never linked, and a
lock file keeps two concurrent runs from building the same env twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitml._version import __version__
from gitml.errors import GitmlError, InvalidInput
from gitml.format import yamlio
from gitml.projects import runtime
from gitml.projects.spec import DockerEnv, Project

MANAGERS = ("local", "virtualenv", "uv", "conda", "docker")
DOCKER_WORKDIR = "/gitml/project"


class EnvironmentUnavailable(GitmlError):
    """A tool an environment needs is missing, or building the environment failed."""


@dataclass
class Environment:
    """How a command runs: the argv that runs it and the variables it gets."""

    manager: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    location: Path | None = None  # the venv or conda prefix, when there is one
    reused: bool = False  # the cached env was there already


def cache_root() -> Path:
    """``$GITML_CACHE_DIR``, else ``$XDG_CACHE_HOME/gitml``, else ``~/.cache/gitml``."""
    explicit = os.environ.get("GITML_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gitml"


def default_manager(project: Project) -> str:
    """MLflow's choice for each environment kind; ``local`` when nothing is declared.

    MLflow builds an empty virtualenv for a project that names no environment;
    gitml runs it with the current interpreter, as there is nothing to install.
    """
    return {"docker_env": "docker", "conda_env": "conda", "python_env": "virtualenv"}.get(
        project.env or "", "local"
    )


def prepare(
    manager: str,
    project: Project,
    command: str,
    *,
    run_env: Mapping[str, str],
    tracking_root: Path | None,
    build: bool = True,
) -> Environment:
    """The environment ``command`` runs in; with ``build=False`` nothing is created or checked."""
    if manager not in MANAGERS:
        raise InvalidInput(f"env manager {manager!r}: choose one of {', '.join(MANAGERS)}")
    if project.env == "docker_env" and manager not in ("docker", "local"):
        raise InvalidInput(
            f"{project.spec_file} declares docker_env: run it with --env-manager docker "
            "(or local, to run the command here without a container)"
        )
    if manager == "docker" and project.docker is None:
        raise InvalidInput(
            "--env-manager docker needs a docker_env (with an image) in "
            f"{project.spec_file or 'MLproject'}"
        )
    if manager == "conda" and project.env == "python_env":
        raise InvalidInput(
            "a python_env project cannot run with conda (as in MLflow): "
            "use --env-manager virtualenv, uv or local"
        )
    if manager == "local":
        return local(command)
    if manager in ("virtualenv", "uv"):
        return virtualenv(project, command, uv=manager == "uv", build=build)
    if manager == "conda":
        return conda(project, command, build=build)
    assert project.docker is not None
    return docker(project, project.docker, command, run_env, tracking_root, build=build)


def _bash(command: str) -> list[str]:
    return ["bash", "-c", command]


def local(command: str) -> Environment:
    bindir = str(Path(sys.executable).parent)
    path = bindir + os.pathsep + os.environ.get("PATH", "")
    return Environment(
        "local",
        _bash(command),
        {"PATH": path},
        f"local: this interpreter ({sys.executable}, Python {_version()})",
    )


def _version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


# -- virtualenv and uv --------------------------------------------------------


@dataclass(frozen=True)
class PythonEnvSpec:
    """What a venv is built from: ``python_env.yaml`` as MLflow defines it."""

    python: str | None
    build_dependencies: tuple[str, ...]
    dependencies: tuple[str, ...]
    source: Path | None  # the file it came from
    base: Path  # where relative -r/-c files are found


def python_env_spec(project: Project) -> PythonEnvSpec:
    """The venv specification of ``project``: python_env.yaml, conda.yaml or requirements.txt."""
    root = project.directory
    if project.env == "python_env" and project.env_file is not None:
        return _read_python_env(project.env_file)
    if project.env == "conda_env" and project.env_file is not None:
        return _from_conda(project.env_file)
    requirements = root / "requirements.txt"
    if requirements.is_file():
        return PythonEnvSpec(None, (), ("-r requirements.txt",), requirements, root)
    return PythonEnvSpec(None, (), (), None, root)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yamlio.load(path.read_bytes())
    except Exception as exc:  # any YAML error means the same to the user
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a mapping at the top level")
    return data


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{path}: field '{key}': expected a list of requirement strings")
    return tuple(value)


def _read_python_env(path: Path) -> PythonEnvSpec:
    data = _load_yaml(path)
    python = data.get("python")
    if python is not None and not isinstance(python, (str, int, float)):
        raise InvalidInput(f"{path}: field 'python': expected a version such as \"3.11\"")
    return PythonEnvSpec(
        str(python) if python is not None else None,
        _strings(path, "build_dependencies", data.get("build_dependencies")),
        _strings(path, "dependencies", data.get("dependencies")),
        path,
        path.parent,
    )


def _from_conda(path: Path) -> PythonEnvSpec:
    """A conda.yaml's Python version and pip section (its conda packages are not pip's)."""
    data = _load_yaml(path)
    python: str | None = None
    pip: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, str):
            match = re.fullmatch(r"python\s*=?=\s*([0-9][0-9.]*)\*?", dep.strip())
            if match:
                python = match.group(1).rstrip(".")
        elif isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            pip.extend(str(p) for p in dep["pip"])
    return PythonEnvSpec(python, (), tuple(pip), path, path.parent)


def find_python(wanted: str | None) -> Path:
    """An interpreter for ``wanted`` (``3.11``, ``3.11.7``): this one, or ``python3.11`` on PATH."""
    if wanted is None:
        return Path(sys.executable)
    parts = wanted.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"python version {wanted!r} is not a version such as 3.11 or 3.11.7")
    major, minor = int(parts[0]), int(parts[1])
    if sys.version_info[:2] == (major, minor):
        return Path(sys.executable)
    found = shutil.which(f"python{major}.{minor}")
    if found is None:
        raise EnvironmentUnavailable(
            f"the project asks for Python {wanted}, but this is Python {_version()} and "
            f"no python{major}.{minor} is on PATH: install it (e.g. with pyenv), "
            "or run with --env-manager local"
        )
    return Path(found)


def _requirement_lines(spec: PythonEnvSpec) -> list[str]:
    """The dependencies as requirement-file lines, -r/-c files made absolute."""
    lines = []
    for dep in spec.dependencies:
        match = re.fullmatch(r"(-r|-c|--requirement|--constraint)\s*=?\s*(\S+)", dep.strip())
        if match and not os.path.isabs(match.group(2)):
            lines.append(f"{match.group(1)} {spec.base / match.group(2)}")
        else:
            lines.append(dep)
    return lines


def _referenced_files(lines: list[str]) -> dict[str, str]:
    """Contents of the -r/-c files, which the env's hash must cover."""
    found = {}
    for line in lines:
        match = re.fullmatch(r"(?:-r|-c|--requirement|--constraint) (\S+)", line)
        if match:
            path = Path(match.group(1))
            if not path.is_file():
                raise InvalidInput(f"requirement file {path} does not exist")
            found[path.name] = path.read_text()
    return found


def env_hash(manager: str, spec: PythonEnvSpec, python: Path) -> str:
    """What identifies a built env: the manager, the Python and every requirement."""
    lines = _requirement_lines(spec)
    version = _interpreter_version(python)
    key = {
        "manager": manager,
        "python": version,
        "build_dependencies": list(spec.build_dependencies),
        "dependencies": [_relative(line, spec.base) for line in lines],
        "files": _referenced_files(lines),
        "runtime": runtime.identity(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _relative(line: str, base: Path) -> str:
    # The same specification in two clones of a project is the same env.
    return line.replace(str(base) + os.sep, "")


def _interpreter_version(python: Path) -> str:
    if python == Path(sys.executable):
        return _version()
    out = subprocess.run(
        [str(python), "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or str(python)


def virtualenv(project: Project, command: str, *, uv: bool, build: bool) -> Environment:
    manager = "uv" if uv else "virtualenv"
    spec = python_env_spec(project)
    python = find_python(spec.python)
    if uv and build and shutil.which("uv") is None:
        raise EnvironmentUnavailable(
            "--env-manager uv needs uv, which is not on PATH: install it "
            "(pip install uv) or use --env-manager virtualenv"
        )
    digest = env_hash(manager, spec, python)
    link = cache_root() / "envs" / digest
    reused = link.exists()
    if build and not reused:
        _build_once(link, lambda target: _build_venv(target, spec, python, uv=uv))
    where = Path(os.path.realpath(link)) if link.exists() else link
    bindir = where / "bin"
    env = {
        "PATH": str(bindir) + os.pathsep + os.environ.get("PATH", ""),
        "VIRTUAL_ENV": str(where),
    }
    source = spec.source.name if spec.source is not None else "no requirements"
    state = "reused" if reused else ("built" if build else "would be built")
    return Environment(
        manager,
        _bash(command),
        env,
        f"{manager}: {where} ({source}, Python {_interpreter_version(python)}; {state})",
        where,
        reused,
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_once(link: Path, builder: Any) -> None:
    """Build into a fresh folder and switch ``link`` to it; one builder at a time."""
    with _locked(link.with_name(link.name + ".lock")):
        if link.exists():  # another run built it while we waited
            return
        target = link.with_name(f"{link.name}.{uuid.uuid4().hex[:8]}")
        try:
            builder(target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        temporary = link.with_name(f"{link.name}.link-{uuid.uuid4().hex[:8]}")
        os.symlink(target.name, temporary)
        os.replace(temporary, link)


def _checked(argv: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise EnvironmentUnavailable(
            f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{tail}"
        )


def _installer(python: Path, *, uv: bool) -> list[str]:
    """``pip install`` (this interpreter's pip) or ``uv pip install`` into ``python``'s env."""
    if uv:
        return ["uv", "pip", "install", "--quiet", "--python", str(python)]
    return [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]


def install_gitml(python: Path, scratch: Path, *, uv: bool = False) -> None:
    """Install the running gitml into ``python``'s env: its wheels without an index,
    then what must come from one (nothing, when ``python`` is like this interpreter)."""
    installation = runtime.prepare(scratch, python)
    try:
        installer = _installer(python, uv=uv)
        # Bytecode is written on first import instead: compiling at install time
        # made installing gitml and its dependencies 2 to 3 times slower (34 s and
        # 46 s against 15 s, back to back on a busy 2-core machine).
        compile_flags = [] if uv else ["--no-compile"]
        _checked(
            [*installer, *compile_flags, "--no-index", "--no-deps", *map(str, installation.wheels)],
            "installing gitml",
        )
        if installation.requirements:
            _checked([*installer, *installation.requirements], "installing gitml's dependencies")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build_venv(target: Path, spec: PythonEnvSpec, python: Path, *, uv: bool) -> None:
    lines = _requirement_lines(spec)
    if uv:
        _checked(["uv", "venv", "--quiet", "--python", str(python), str(target)], "uv venv")
    else:
        _checked([str(python), "-m", "venv", "--without-pip", str(target)], "creating the venv")
    venv_python = target / "bin" / "python"
    # Before the project's requirements, so that one naming gitml finds it installed.
    install_gitml(venv_python, target / "gitml-wheels", uv=uv)
    for group in (list(spec.build_dependencies), lines):
        if not group:
            continue
        requirements = target / "gitml-requirements.txt"
        requirements.write_text("\n".join(group) + "\n")
        argv = _installer(venv_python, uv=uv)
        _checked([*argv, "-r", str(requirements)], "installing the requirements", spec.base)
        requirements.unlink()


# -- conda ----------------------------------------------------------------------


def _tool(name: str, purpose: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise EnvironmentUnavailable(
            f"--env-manager {purpose} needs {name}, which is not on PATH: install it, "
            "or choose another --env-manager (local, virtualenv)"
        )
    return found


def conda(project: Project, command: str, *, build: bool) -> Environment:
    if project.env_file is None or project.env != "conda_env":
        raise InvalidInput(
            "--env-manager conda needs a conda.yaml (or conda_env in MLproject) in "
            f"{project.directory}"
        )
    tool = _tool("conda", "conda") if build else (shutil.which("conda") or "conda")
    key = json.dumps(runtime.identity(), sort_keys=True).encode()
    digest = hashlib.sha256(b"conda\0" + project.env_file.read_bytes() + key).hexdigest()[:20]
    prefix = cache_root() / "conda" / digest
    complete = prefix / "gitml-complete"
    reused = complete.is_file()
    if build and not reused:
        # A conda prefix cannot move either; it is built in place under the lock
        # and is complete once gitml is installed in it (the marker is written last).
        with _locked(prefix.with_name(digest + ".lock")):
            if not complete.is_file():
                shutil.rmtree(prefix, ignore_errors=True)
                _checked(
                    [
                        tool,
                        "env",
                        "create",
                        "--quiet",
                        "--prefix",
                        str(prefix),
                        "--file",
                        str(project.env_file),
                    ],
                    "conda env create",
                )
                python = prefix / "bin" / "python"
                if not python.exists():
                    raise EnvironmentUnavailable(
                        f"{project.env_file}: the conda env has no Python, so gitml cannot "
                        "be installed in it: list python in its dependencies"
                    )
                install_gitml(python, prefix / "gitml-wheels")
                complete.write_text("")
    argv = [tool, "run", "--no-capture-output", "--prefix", str(prefix), *_bash(command)]
    state = "reused" if reused else ("built" if build else "would be built")
    return Environment(
        "conda", argv, {}, f"conda: {prefix} ({project.env_file.name}; {state})", prefix, reused
    )


# -- docker ---------------------------------------------------------------------


def docker_argv(
    docker_env: DockerEnv,
    project_dir: Path,
    command: str,
    run_env: Mapping[str, str],
    tracking_root: Path | None,
    host_env: Mapping[str, str],
    tool: str = "docker",
) -> list[str]:
    """``docker run`` for a project: the project mounted as the work dir, the tracking
    repository mounted at its own path (so ``GITML_TRACKING_URI`` means the same
    inside), the running gitml mounted read-only and first on ``PYTHONPATH``, the
    run's variables, and the image's volumes and environment.

    MLflow builds a new image with the project copied in; gitml mounts it, so
    nothing is built and the container sees the exact files the run records.
    """
    argv = [tool, "run", "--rm", "-v", f"{project_dir}:{DOCKER_WORKDIR}", "-w", DOCKER_WORKDIR]
    if tracking_root is not None:
        argv += ["-v", f"{tracking_root}:{tracking_root}"]
    for source, target in runtime.docker_mounts():
        argv += ["-v", f"{source}:{target}:ro"]
    for volume in docker_env.volumes:
        argv += ["-v", volume]
    variables = dict(run_env)
    for item in docker_env.environment:
        if isinstance(item, list):
            variables[item[0]] = item[1]
        else:
            if item not in host_env:
                raise InvalidInput(
                    f"docker_env.environment copies {item} from this machine, but it is not set"
                )
            variables[item] = host_env[item]
    for key, value in variables.items():
        argv += ["-e", f"{key}={value}"]
    # This gitml comes first on the image's own PYTHONPATH, which it keeps.
    lib = f'export PYTHONPATH="{runtime.DOCKER_LIB}${{PYTHONPATH:+:$PYTHONPATH}}"; '
    # sh, not bash: many images (alpine, distroless-python) have no bash.
    return [*argv, docker_env.image, "sh", "-c", lib + command]


def check_docker() -> str:
    """The docker binary, once the engine answers; otherwise what is missing."""
    tool = _tool("docker", "docker")
    try:
        done = subprocess.run(
            [tool, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentUnavailable(
            "docker is installed, but its engine did not answer in 20 s"
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise EnvironmentUnavailable(
            f"docker is installed, but no Docker engine answers ({reason}): "
            "start the engine (or set DOCKER_HOST), or choose another --env-manager"
        )
    return tool


def docker(
    project: Project,
    docker_env: DockerEnv,
    command: str,
    run_env: Mapping[str, str],
    tracking_root: Path | None,
    *,
    build: bool,
) -> Environment:
    tool = check_docker() if build else "docker"
    argv = docker_argv(
        docker_env, project.directory, command, run_env, tracking_root, os.environ, tool
    )
    return Environment("docker", argv, {}, f"docker: image {docker_env.image}; {docker_note()}")


def docker_note() -> str:
    """What the image must bring for the mounted gitml: its dependencies, as a Dockerfile line."""
    requirements = " ".join(shlex.quote(r) for r in runtime.dependency_requirements())
    return (
        f"gitml {__version__} mounted at {runtime.DOCKER_LIB}; the image needs its "
        f"dependencies (Dockerfile: RUN pip install {requirements})"
    )

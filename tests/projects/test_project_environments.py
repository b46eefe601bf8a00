"""Environments: a real cached venv, and conda/docker command lines and failures."""

from __future__ import annotations

import importlib.metadata
import os
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import gitml
from gitml import projects
from gitml.cli import main
from gitml.errors import InvalidInput
from gitml.projects import environments, runtime
from gitml.projects.environments import EnvironmentUnavailable, docker_argv, prepare
from gitml.projects.spec import DockerEnv, load_project
from gitml.tracking.client import Client
from testing.procs import wait_for
from testing.projects import write_project

ROOT = Path(__file__).resolve().parents[2]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# A project script that logs with gitml, and says which gitml and which env it ran in.
LOG_A_METRIC = """\
import sys
import gitml

with gitml.start_run():
    gitml.log_metric("seen", 1.5)
print(gitml.__file__)
print(sys.prefix)
"""
SHOW_PREFIX = "entry_points: {main: {command: \"python -c 'import sys; print(sys.prefix)'\"}}\n"


def fake_tool(bindir: Path, name: str, script: str) -> Path:
    """An executable ``name`` in ``bindir`` running the bash ``script``."""
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text("#!/usr/bin/env bash\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.slow
def test_virtualenv_builds_once_and_the_second_run_reuses_it(repo: Path) -> None:
    project = write_project(
        repo / "venv-proj",
        "python_env: python_env.yaml\n"
        "entry_points: {main: {command: \"python -c 'import sys, six; print(sys.prefix)'\"}}\n",
        **{"python_env.yaml": f"python: '{PYTHON}'\ndependencies: [six]\n"},
    )
    first = projects.run(str(project))  # virtualenv: MLflow's default for python_env
    assert first.status == "FINISHED"
    client = Client()
    run = client.get_run(first.run_id)
    assert run.tags["mlflow.project.env"] == "virtualenv"
    prefix = client.read_artifact(first.run_id, "project.log").decode().strip()
    assert prefix.startswith(str(environments.cache_root() / "envs"))
    assert prefix != sys.prefix

    started = time.monotonic()
    again = prepare("virtualenv", load_project(project), "true", run_env={}, tracking_root=None)
    assert again.reused and time.monotonic() - started < 1.0
    assert str(again.location) == prefix
    second = projects.run(str(project))
    assert client.read_artifact(second.run_id, "project.log").decode().strip() == prefix


@pytest.mark.slow  # the venv gets gitml and its dependencies: seconds
def test_a_venv_without_requirements_builds_in_a_moment(repo: Path) -> None:
    project = write_project(repo / "bare-venv", SHOW_PREFIX)
    done = projects.run(str(project), env_manager="virtualenv")
    prefix = Client().read_artifact(done.run_id, "project.log").decode().strip()
    assert Path(prefix).parent == environments.cache_root() / "envs"
    assert (Path(prefix) / "pyvenv.cfg").is_file()
    link = Path(prefix).parent / Path(prefix).name.split(".")[0]
    assert link.is_symlink() and os.path.realpath(link) == prefix


def test_the_env_hash_follows_the_specification(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        None,
        **{"python_env.yaml": "dependencies: ['-r requirements.txt']\n", "requirements.txt": "a\n"},
    )
    python = Path(sys.executable)

    def digest() -> str:
        spec = environments.python_env_spec(load_project(project))
        return environments.env_hash("virtualenv", spec, python)

    first = digest()
    assert digest() == first
    (project / "requirements.txt").write_text("b\n")  # a file -r names is part of the env
    second = digest()
    assert second != first
    (project / "python_env.yaml").write_text("dependencies: ['-r requirements.txt', c]\n")
    assert digest() not in (first, second)
    spec = environments.python_env_spec(load_project(project))
    assert environments.env_hash("uv", spec, python) != digest()


def test_the_env_hash_follows_the_running_gitml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = environments.python_env_spec(load_project(write_project(tmp_path / "p", None)))
    before = environments.env_hash("virtualenv", spec, Path(sys.executable))
    monkeypatch.setattr(runtime, "__version__", "99.0")  # another gitml: another env
    assert environments.env_hash("virtualenv", spec, Path(sys.executable)) != before


def test_requirements_txt_and_conda_yaml_make_venv_specs(tmp_path: Path) -> None:
    req = write_project(tmp_path / "req", None, **{"requirements.txt": "six\n"})
    assert environments.python_env_spec(load_project(req)).dependencies == ("-r requirements.txt",)
    conda = write_project(
        tmp_path / "conda",
        None,
        **{"conda.yaml": "dependencies:\n- python=3.10.4\n- numpy\n- pip:\n  - six==1.16\n"},
    )
    spec = environments.python_env_spec(load_project(conda))
    assert (spec.python, spec.dependencies) == ("3.10.4", ("six==1.16",))


def test_concurrent_builds_build_once_and_a_crashed_build_leaves_nothing(tmp_path: Path) -> None:
    link = tmp_path / "envs" / "abc"
    calls: list[Path] = []

    def builder(target: Path) -> None:
        calls.append(target)
        target.mkdir()
        if len(calls) == 1:  # the second build starts while this one holds the lock
            second.start()
            # The kernel names what a thread sleeps in: here, waiting for a flock.
            wchan = Path(f"/proc/self/task/{second.native_id}/wchan")
            wait_for(lambda: wchan.read_text().endswith("lock_inode_wait"), 30, "the lock")
        (target / "done").write_text("")

    first = threading.Thread(target=environments._build_once, args=(link, builder))
    second = threading.Thread(target=environments._build_once, args=(link, builder))
    first.start()
    first.join()
    second.join()
    assert len(calls) == 1 and (link / "done").is_file()

    def crash(target: Path) -> None:
        target.mkdir()
        raise RuntimeError("pip failed")

    other = tmp_path / "envs" / "def"
    with pytest.raises(RuntimeError):
        environments._build_once(other, crash)
    assert not other.exists()
    names = sorted(p.name for p in other.parent.iterdir())
    assert names == sorted(["abc", "abc.lock", calls[0].name, "def.lock"])


def test_a_python_version_that_is_not_here_fails_up_front(repo: Path) -> None:
    project = write_project(
        repo / "old", "python_env: env.yaml\n" + SHOW_PREFIX, **{"env.yaml": "python: '3.99'\n"}
    )
    with pytest.raises(
        EnvironmentUnavailable, match=r"asks for Python 3.99.*no python3.99 is on PATH"
    ):
        projects.run(str(project))
    assert Client().list_runs()[0] == []


def test_a_missing_requirements_file_fails_up_front(repo: Path) -> None:
    project = write_project(
        repo / "broken",
        "python_env: env.yaml\n" + SHOW_PREFIX,
        **{"env.yaml": "dependencies: ['-r missing-requirements.txt']\n"},
    )
    with pytest.raises(InvalidInput, match=r"missing-requirements\.txt does not exist"):
        projects.run(str(project))
    assert Client().list_runs()[0] == []


# -- tools that are missing -------------------------------------------------------------


@pytest.fixture
def only_fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only a folder of fake tools (and bash, env, git, mkdir, which runs need)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for tool in ("bash", "env", "git", "mkdir"):
        found = next(
            Path(d) / tool
            for d in os.environ["PATH"].split(os.pathsep)
            if (Path(d) / tool).exists()
        )
        (bindir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bindir))
    return bindir


@pytest.mark.parametrize(
    ("mlproject", "files", "manager", "message"),
    [
        (SHOW_PREFIX, {}, "uv", "--env-manager uv needs uv, which is not on PATH"),
        ("conda_env: c.yaml\n" + SHOW_PREFIX, {"c.yaml": "{}\n"}, "conda", "needs conda"),
        ("docker_env: {image: img}\n" + SHOW_PREFIX, {}, "docker", "needs docker"),
    ],
)
def test_missing_tools_fail_before_a_run_exists(
    repo: Path, only_fakes: Path, mlproject: str, files: dict[str, str], manager: str, message: str
) -> None:
    project = write_project(repo / "p", mlproject, **files)
    result = CliRunner().invoke(main, ["run", str(project), "--env-manager", manager])
    assert result.exit_code == 1, result.output
    assert message in result.output and "not on PATH" in result.output
    assert Client().list_runs()[0] == []


def test_a_docker_client_without_an_engine_is_named(repo: Path, only_fakes: Path) -> None:
    fake_tool(
        only_fakes,
        "docker",
        'echo "Cannot connect to the Docker daemon at unix:///x" >&2\nexit 1\n',
    )
    project = write_project(repo / "d", "docker_env: {image: img}\n" + SHOW_PREFIX)
    result = CliRunner().invoke(main, ["run", str(project)])
    assert result.exit_code == 1
    assert "docker is installed, but no Docker engine answers (Cannot connect" in result.output
    assert Client().list_runs()[0] == []


def test_the_real_docker_client_here_has_no_engine(repo: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        pytest.skip("a Docker engine answers here")
    with pytest.raises(EnvironmentUnavailable, match="no Docker engine answers"):
        environments.check_docker()


@pytest.mark.parametrize(
    ("mlproject", "manager", "message"),
    [
        ("python_env: e.yaml\n", "conda", "python_env project cannot run with conda"),
        ("", "docker", "needs a docker_env"),
        ("docker_env: {image: i}\n", "virtualenv", "declares docker_env"),
        ("", "conda", "needs a conda.yaml"),
    ],
)
def test_managers_that_do_not_fit_the_project(
    tmp_path: Path, mlproject: str, manager: str, message: str
) -> None:
    project = write_project(tmp_path / "p", mlproject + SHOW_PREFIX, **{"e.yaml": "{}\n"})
    with pytest.raises(InvalidInput, match=message):
        prepare(manager, load_project(project), "x", run_env={}, tracking_root=None, build=False)


# -- conda and docker command lines -------------------------------------------------------


def fake_conda(bindir: Path, calls: Path) -> None:
    """A conda whose envs are venvs of this Python, and whose ``run`` activates one."""
    fake_tool(
        bindir,
        "conda",
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = env ]; then\n'
        f'  {sys.executable} -m venv --without-pip "$5" && mkdir -p "$5/conda-meta"; exit\n'
        "fi\n"
        'PATH="$4/bin:$PATH"; shift 4; exec "$@"\n',  # run --no-capture-output --prefix P CMD
    )


@pytest.mark.slow
def test_conda_creates_the_env_once_and_runs_the_command_in_it(
    repo: Path, only_fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = only_fakes.parent / "conda-calls"
    fake_conda(only_fakes, calls)
    # gitml installed as a wheel installs it (a copy), not as a source checkout (a link).
    monkeypatch.setattr(runtime, "is_source_checkout", lambda: False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    project = write_project(
        repo / "c",
        "conda_env: conda.yaml\n"
        "entry_points: {main: {command: 'echo in-conda {n} && python log.py', "
        "parameters: {n: int}}}\n",
        **{"conda.yaml": f"dependencies: [python={PYTHON}]\n", "log.py": LOG_A_METRIC},
    )
    first = projects.run(str(project), parameters={"n": "1"})
    second = projects.run(str(project), parameters={"n": "2"})
    assert (first.status, second.status) == ("FINISHED", "FINISHED")
    lines = calls.read_text().splitlines()
    prefix = environments.cache_root() / "conda"
    assert lines[0].startswith(f"env create --quiet --prefix {prefix}/")
    assert lines[0].endswith(f"--file {project / 'conda.yaml'}")
    assert [line.split()[0] for line in lines] == ["env", "run", "run"]  # built once
    assert lines[1].startswith(f"run --no-capture-output --prefix {prefix}/")
    assert lines[1].endswith("bash -c echo in-conda 1 && python log.py")
    log = Client().read_artifact(second.run_id, "project.log").decode()
    greeting, module, env_prefix = log.split("\n")[:3]
    assert greeting == "in-conda 2"
    assert Client().get_run(second.run_id).tags["mlflow.project.env"] == "conda"
    # This gitml's files, copied into the env, log the metric.
    assert Path(module).is_relative_to(env_prefix) and Path(env_prefix).parent == prefix
    assert Client().get_run(second.run_id).metrics["seen"].value == 1.5


def test_a_conda_env_without_python_is_named(repo: Path, only_fakes: Path) -> None:
    fake_tool(only_fakes, "conda", 'mkdir -p "$5/conda-meta"\n')
    project = write_project(
        repo / "c", "conda_env: conda.yaml\n" + SHOW_PREFIX, **{"conda.yaml": "name: x\n"}
    )
    with pytest.raises(EnvironmentUnavailable, match=r"conda.yaml: the conda env has no Python"):
        projects.run(str(project))
    assert Client().list_runs()[0] == []


def test_the_docker_command_line(tmp_path: Path) -> None:
    env = DockerEnv(
        image="repo/img:1",
        volumes=["/data:/data:ro"],
        environment=["HOST_VAR", ["SET_VAR", "a b"]],
    )
    argv = docker_argv(
        env,
        tmp_path / "proj",
        "python train.py --a 1",
        {"GITML_RUN_ID": "abc", "GITML_TRACKING_URI": str(tmp_path / "repo")},
        tmp_path / "repo",
        {"HOST_VAR": "from-host"},
    )
    assert argv == [
        "docker", "run", "--rm",
        "-v", f"{tmp_path / 'proj'}:/gitml/project", "-w", "/gitml/project",
        "-v", f"{tmp_path / 'repo'}:{tmp_path / 'repo'}",
        "-v", f"{Path(gitml.__file__).parent}:/gitml/lib/gitml:ro",
        "-v", f"{ROOT / 'schemas'}:/gitml/lib/schemas:ro",  # beside the package, as here
        "-v", "/data:/data:ro",
        "-e", "GITML_RUN_ID=abc",
        "-e", f"GITML_TRACKING_URI={tmp_path / 'repo'}",
        "-e", "HOST_VAR=from-host",
        "-e", "SET_VAR=a b",
        "repo/img:1", "sh", "-c",
        'export PYTHONPATH="/gitml/lib${PYTHONPATH:+:$PYTHONPATH}"; python train.py --a 1',
    ]  # fmt: skip
    with pytest.raises(InvalidInput, match="copies HOST_VAR from this machine, but it is not set"):
        docker_argv(env, tmp_path, "x", {}, None, {})


def test_docker_dry_run_shows_the_command_without_an_engine(repo: Path, only_fakes: Path) -> None:
    project = write_project(repo / "d", "docker_env: {image: img}\n" + SHOW_PREFIX)
    result = CliRunner().invoke(main, ["run", str(project), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "docker: image img" in result.output
    assert "runs as:     docker run --rm -v" in result.output
    assert "GITML_RUN_ID=<run id>" in result.output


def test_a_run_with_a_fake_docker_engine_passes_the_run_to_the_container(
    repo: Path, only_fakes: Path
) -> None:
    calls = only_fakes.parent / "docker-calls"
    fake_tool(
        only_fakes,
        "docker",
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = info ]; then echo 27.0; exit 0; fi\n'
        "echo container ran\n",
    )
    project = write_project(repo / "d", "docker_env: {image: img}\n" + SHOW_PREFIX)
    done = projects.run(str(project))
    assert done.status == "FINISHED"
    info, command = calls.read_text().splitlines()
    assert info.startswith("info")
    assert f"-e GITML_RUN_ID={done.run_id}" in command
    assert f"-e GITML_TRACKING_URI={repo}" in command
    assert Client().get_run(done.run_id).tags["mlflow.project.env"] == "docker"


@pytest.mark.slow  # the venv gets gitml and its dependencies: seconds
def test_a_failing_install_fails_up_front_with_pips_message_and_links_nothing(
    repo: Path,
) -> None:
    project = write_project(
        repo / "nope",
        "python_env: env.yaml\n" + SHOW_PREFIX,
        **{"env.yaml": "dependencies: [gitml-test-no-such-package]\n"},
    )
    with pytest.raises(EnvironmentUnavailable, match="No matching distribution found"):
        projects.run(str(project))
    assert Client().list_runs()[0] == []
    envs = environments.cache_root() / "envs"
    assert [p.name for p in envs.iterdir() if not p.name.endswith(".lock")] == []


# -- the running gitml in the environments gitml builds ------------------------------------


@pytest.mark.slow
def test_a_venv_project_imports_this_gitml_and_logs_without_a_package_index(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing but the env itself may provide gitml and its dependencies.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    project = write_project(
        repo / "logs",
        "python_env: python_env.yaml\n"
        "entry_points: {main: {command: 'python log.py && command -v gitml'}}\n",
        # Listing gitml, as MLflow projects list mlflow, is satisfied by this gitml.
        **{
            "python_env.yaml": f"python: '{PYTHON}'\ndependencies: [gitml]\n",
            "log.py": LOG_A_METRIC,
        },
    )
    done = projects.run(str(project))
    log = Client().read_artifact(done.run_id, "project.log").decode()
    assert done.status == "FINISHED", log
    assert Client().get_run(done.run_id).metrics["seen"].value == 1.5
    module, prefix, script = log.split()
    assert Path(prefix).parent == environments.cache_root() / "envs"
    assert Path(module).resolve() == Path(gitml.__file__).resolve()  # this very gitml
    assert script == f"{prefix}/bin/gitml"


def fake_uv(bindir: Path, calls: Path) -> None:
    """A uv whose venvs are this Python's and whose ``pip install`` is this Python's pip."""
    fake_tool(
        bindir,
        "uv",
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = venv ]; then exec "$4" -m venv --without-pip "$5"; fi\n'
        # pip install --quiet --python VENV_PYTHON ARGS...
        f'python="$5"; shift 5; exec {sys.executable} -m pip --python "$python" install -q "$@"\n',
    )


@pytest.mark.slow
def test_uv_installs_this_gitml_with_uv(
    repo: Path, only_fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = only_fakes.parent / "uv-calls"
    fake_uv(only_fakes, calls)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    project = write_project(
        repo / "u", "entry_points: {main: {command: 'python log.py'}}\n", **{"log.py": LOG_A_METRIC}
    )
    done = projects.run(str(project), env_manager="uv")
    log = Client().read_artifact(done.run_id, "project.log").decode()
    assert done.status == "FINISHED", log
    assert Client().get_run(done.run_id).metrics["seen"].value == 1.5
    create, install = calls.read_text().splitlines()
    assert create.startswith(f"venv --quiet --python {sys.executable} ")
    venv = create.split()[-1]
    python = f"{venv}/bin/python"
    assert install.startswith(f"pip install --quiet --python {python} --no-index --no-deps ")
    assert f"/gitml-{gitml.__version__}-py3-none-any.whl " in install
    assert log.split()[1] == os.path.realpath(venv)


def test_another_python_gets_this_gitml_and_its_dependencies_from_the_index(
    tmp_path: Path,
) -> None:
    # Its compiled extensions are not this interpreter's: none can be copied over.
    other = fake_tool(tmp_path / "bin", "python3.99", "echo .cpython-399-x86_64-linux-gnu.so\n")
    installation = runtime.prepare(tmp_path / "wheels", other)
    assert [w.name for w in installation.wheels] == [f"gitml-{gitml.__version__}-py3-none-any.whl"]
    assert "pydantic>=2.6" in installation.requirements
    assert not any("extra ==" in r for r in installation.requirements)
    assert installation.requirements == runtime.dependency_requirements()


def test_this_python_gets_every_dependency_as_a_wheel(tmp_path: Path) -> None:
    installation = runtime.prepare(tmp_path / "wheels", Path(sys.executable))
    assert installation.requirements == ()
    names = {w.name.split("-")[0].lower() for w in installation.wheels}
    assert {"gitml", "dulwich", "pydantic", "pydantic_core", "pyyaml", "click"} <= names
    core = next(w for w in installation.wheels if w.name.startswith("pydantic_core"))
    with zipfile.ZipFile(core) as whl:
        files = whl.namelist()
        record = whl.read(next(f for f in files if f.endswith(".dist-info/RECORD"))).decode()
    assert any(f.endswith(".so") for f in files)  # the compiled extension, as installed
    assert sorted(line.split(",")[0] for line in record.splitlines()) == sorted(files)


def test_the_gitml_wheel_of_an_installed_or_a_source_gitml(tmp_path: Path) -> None:
    copied = runtime.gitml_wheel(tmp_path / "copy", editable=False)
    with zipfile.ZipFile(copied) as whl:
        files = set(whl.namelist())
        info = f"gitml-{gitml.__version__}.dist-info"
        metadata = whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert {"gitml/__init__.py", "gitml/_schemas/run.schema.json"} <= files
    assert not any("__pycache__" in f for f in files)
    assert f"\nVersion: {gitml.__version__}\n" in metadata
    assert "gitml = gitml.cli:main" in entry_points
    linked = runtime.gitml_wheel(tmp_path / "link", editable=True)
    with zipfile.ZipFile(linked) as whl:
        assert whl.read("_gitml_source.pth").decode() == f"{ROOT}\n"
        assert not any(f.startswith("gitml/") for f in whl.namelist())


def test_a_distribution_without_a_record_is_a_requirement(tmp_path: Path) -> None:
    info = tmp_path / "legacy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: legacy\nVersion: 1.0\n")
    dist = importlib.metadata.PathDistribution(info)
    assert runtime.repacked_wheel(dist, tmp_path) is None


def test_the_mounted_gitml_imports_with_its_schemas_in_a_container_layout(tmp_path: Path) -> None:
    # The container's view of the mounts, made of symlinks; the image's packages are this
    # interpreter's (the container has gitml's dependencies).
    lib = tmp_path / "gitml" / "lib"
    for source, target in runtime.docker_mounts():
        link = tmp_path / target.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
    check = (
        "import gitml, gitml.format.schemas; "
        "print(gitml.__file__); print(len(gitml.format.schemas.load('run')['properties']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        env={**os.environ, "PYTHONPATH": str(lib)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    module, properties = done.stdout.split()
    assert module == str(lib / "gitml" / "__init__.py") and int(properties) > 0


def test_docker_dry_run_names_what_the_image_needs(repo: Path, only_fakes: Path) -> None:
    project = write_project(repo / "d", "docker_env: {image: img}\n" + SHOW_PREFIX)
    result = CliRunner().invoke(main, ["run", str(project), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"gitml {gitml.__version__} mounted at /gitml/lib" in result.output
    line = result.output.split("Dockerfile: RUN pip install ", 1)[1].split(")", 1)[0]
    assert {"'dulwich>=1.2'", "'pydantic>=2.6'", "'pyyaml>=6.0'"} <= set(line.split())

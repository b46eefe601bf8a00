"""Running a project's entry point as a run, and running a run again.

Everything that can be wrong (the project, the entry point, a parameter, a
missing tool, an env that does not build) fails before the run is created.
Then the run is created with its params and source, and the command gets
``GITML_RUN_ID`` and ``GITML_TRACKING_URI``, so ``gitml.start_run()`` inside it
logs to that same run. The command's exit status sets the run's status; its
output streams to the terminal and into the run's ``project.log`` artifact;
SIGINT and SIGTERM are passed to the command's process group and the run ends
KILLED.

Tags: MLflow's names where MLflow has one (``mlflow.source.type`` PROJECT,
``mlflow.source.name``, ``mlflow.source.git.repoURL``,
``mlflow.source.git.commit``, ``mlflow.project.entryPoint``,
``mlflow.project.env``, ``mlflow.project.backend``), so filters written for
MLflow work; gitml's own for what MLflow does not record
(``gitml.project.subdirectory``, ``gitml.project.version``,
``gitml.reproduces``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from gitml.errors import InvalidInput, NotARepository, NotFound
from gitml.git.store import CodeVersion, Store
from gitml.projects import environments, params
from gitml.projects.environments import Environment
from gitml.projects.fetch import FetchedProject, fetch, repository_of
from gitml.projects.spec import DEFAULT_ENTRY_POINT, EntryPoint, Project, load_project
from gitml.tracking import validation
from gitml.tracking.client import Client
from gitml.tracking.git_backend import GitBackend

LOG_ARTIFACT = "project.log"
TAG_ENTRY_POINT = "mlflow.project.entryPoint"
TAG_ENV = "mlflow.project.env"
TAG_BACKEND = "mlflow.project.backend"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_REPO_URL = "mlflow.source.git.repoURL"
TAG_COMMIT = "mlflow.source.git.commit"
TAG_SUBDIRECTORY = "gitml.project.subdirectory"
TAG_VERSION = "gitml.project.version"
TAG_REPRODUCES = "gitml.reproduces"
KILL_GRACE = 10.0  # seconds between the forwarded signal and SIGKILL


@dataclass
class Plan:
    """A resolved project run: what would run, where, and how."""

    project: Project
    entry_point: EntryPoint
    parameters: params.ResolvedParameters
    command: str
    environment: Environment
    source_name: str
    fetched: FetchedProject
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def manager(self) -> str:
        return self.environment.manager

    def describe(self) -> dict[str, Any]:
        """The plan as plain data (what ``gitml run --dry-run`` prints)."""
        return {
            "project": self.project.name or self.project.directory.name,
            "directory": str(self.project.directory),
            "source": self.source_name,
            "commit": self.fetched.commit,
            "entry_point": self.entry_point.name,
            "parameters": dict(self.parameters.given),
            "env_manager": self.environment.manager,
            "environment": self.environment.description,
            "command": self.command,
            "argv": list(self.environment.argv),
        }


@dataclass(frozen=True)
class ProjectRun:
    """A finished project run."""

    run_id: str
    status: str  # FINISHED, FAILED or KILLED
    exit_code: int  # the command's, or 128 + signal when a signal ended it
    command: str
    # Untracked files too large for the run's snapshot of the code, so
    # ``reproduce`` will not have them.
    omitted: tuple[str, ...] = ()


def plan(
    uri: str = ".",
    entry_point: str = DEFAULT_ENTRY_POINT,
    parameters: Mapping[str, Any] | None = None,
    *,
    env_manager: str | None = None,
    version: str | None = None,
    build: bool = False,
) -> Plan:
    """Resolve a project run without running anything (``gitml run --dry-run``).

    The caller owns ``plan.fetched`` and must ``cleanup()`` it.
    """
    fetched = fetch(uri, version)
    try:
        return _plan(fetched, uri, entry_point, parameters, env_manager, build=build)
    except BaseException:
        fetched.cleanup()
        raise


def _plan(
    fetched: FetchedProject,
    uri: str,
    entry_point: str,
    parameters: Mapping[str, Any] | None,
    env_manager: str | None,
    *,
    build: bool,
    tracking_root: Path | None = None,
) -> Plan:
    project = load_project(fetched.directory)
    entry = project.entry_point(entry_point)
    given = {str(k): str(v) for k, v in (parameters or {}).items()}
    for key, value in given.items():
        validation.key("param", key)
        validation.param_value(key, value)
    resolved = params.resolve(entry, given, cwd=Path.cwd(), project_dir=project.directory)
    command = params.command_line(entry, resolved)
    manager = env_manager or environments.default_manager(project)
    placeholder = {
        "GITML_RUN_ID": "<run id>",
        "GITML_TRACKING_URI": str(tracking_root or "<tracking repo>"),
    }
    environment = environments.prepare(
        manager, project, command, run_env=placeholder, tracking_root=tracking_root, build=build
    )
    source_name = fetched.url or str(project.directory)
    tags = {
        TAG_SOURCE_TYPE: "PROJECT",
        TAG_SOURCE_NAME: source_name,
        TAG_ENTRY_POINT: entry.name,
        TAG_ENV: manager,
        TAG_BACKEND: "local",
    }
    if fetched.url is not None:
        tags[TAG_REPO_URL] = fetched.url
    if fetched.commit is not None:
        tags[TAG_COMMIT] = fetched.commit
    if fetched.version is not None:
        tags[TAG_VERSION] = fetched.version
    return Plan(project, entry, resolved, command, environment, source_name, fetched, tags)


def _code_store(directory: Path) -> Store | None:
    try:
        store = Store.discover(directory)
    except NotARepository:
        return None
    return None if store.bare else store


def run(
    uri: str = ".",
    entry_point: str = DEFAULT_ENTRY_POINT,
    parameters: Mapping[str, Any] | None = None,
    *,
    env_manager: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    version: str | None = None,
    tracking_uri: str | None = None,
) -> ProjectRun:
    """Run an entry point of the project at ``uri`` (a folder or a Git URL) as a new run.

    As ``gitml run URI -e ENTRY -P k=v``: returns when the command ends, with
    the run's id and status; the command's output goes to this process's
    stdout and stderr as it comes.
    """
    fetched = fetch(uri, version)
    try:
        code = _code_store(fetched.directory)
        subdirectory = _subdirectory(fetched, code)
        return _execute(
            fetched,
            uri,
            entry_point,
            parameters,
            env_manager=env_manager,
            experiment=experiment,
            run_name=run_name,
            tracking_uri=tracking_uri,
            code=code,
            extra_tags={TAG_SUBDIRECTORY: subdirectory} if code is not None else {},
        )
    finally:
        fetched.cleanup()


def _subdirectory(fetched: FetchedProject, code: Store | None) -> str:
    if code is None:
        return fetched.subdirectory or "."
    relative = fetched.directory.resolve().relative_to(code.root.resolve()).as_posix()
    return relative or "."


def _execute(
    fetched: FetchedProject,
    uri: str,
    entry_point: str,
    parameters: Mapping[str, Any] | None,
    *,
    env_manager: str | None,
    experiment: str | None,
    run_name: str | None,
    tracking_uri: str | None,
    code: Store | CodeVersion | None,
    extra_tags: Mapping[str, str],
) -> ProjectRun:
    where = tracking_uri or os.environ.get("GITML_TRACKING_URI")
    if where is not None and where.startswith(("http://", "https://")):
        raise InvalidInput(
            f"tracking URI {where!r}: project runs are recorded in a Git repository; "
            "a gitml server is not supported by 'gitml run' yet"
        )
    # The run records the project's code, not the code where gitml was started.
    client = Client(backend=GitBackend(tracking_uri, code=code))
    try:
        tracking_root = client.store.root
        resolved = _plan(
            fetched,
            uri,
            entry_point,
            parameters,
            env_manager,
            build=True,
            tracking_root=tracking_root,
        )
        if fetched.url is None and isinstance(code, Store):
            url, _ = repository_of(fetched.directory)
            if url is not None:
                resolved.tags[TAG_REPO_URL] = url
        exp_id = client.get_or_create_experiment_id(
            experiment or os.environ.get("GITML_EXPERIMENT_NAME") or None
        )
        created = client.create_run(
            exp_id,
            run_name=run_name,
            tags={**resolved.tags, **extra_tags},
            entry_point=resolved.entry_point.name,
            commit=True,  # the entry point's process logs to it
        )
        run_id = created.id
        commit = created.source.commit
        client.log_batch(
            run_id,
            params=resolved.parameters.given,
            tags={TAG_COMMIT: commit} if commit is not None else {},
        )
        run_env = {"GITML_RUN_ID": run_id, "GITML_TRACKING_URI": str(tracking_root)}
        environment = resolved.environment
        if environment.manager == "docker":  # its argv carries the run's variables
            environment = environments.prepare(
                "docker",
                resolved.project,
                resolved.command,
                run_env=run_env,
                tracking_root=tracking_root,
                build=False,
            )
        done = _supervise(client, run_id, resolved, environment, run_env)
        return dataclasses.replace(done, omitted=tuple(created.source.omitted))
    finally:
        client.close()


def _supervise(
    client: Client,
    run_id: str,
    resolved: Plan,
    environment: Environment,
    run_env: Mapping[str, str],
) -> ProjectRun:
    """Run the command, stream and keep its output, and end the run by its exit status."""
    env = {**os.environ, **environment.env, **run_env}
    env.pop("GITML_EXPERIMENT_NAME", None)
    logdir = Path(tempfile.mkdtemp(prefix="gitml-run-"))
    log_path = logdir / LOG_ARTIFACT
    status = "FAILED"
    exit_code = 1
    try:
        with open(log_path, "wb") as log:
            child = _Child(environment.argv, resolved.project.directory, env, log)
            try:
                exit_code = child.wait()
            finally:
                child.stop()
        status = "KILLED" if child.signalled else ("FINISHED" if exit_code == 0 else "FAILED")
    except KeyboardInterrupt:
        status, exit_code = "KILLED", 128 + signal.SIGINT
        raise
    finally:
        try:
            if log_path.exists():
                client.log_artifact(run_id, log_path)
        finally:
            client.set_terminated(run_id, status)
            shutil.rmtree(logdir, ignore_errors=True)
    return ProjectRun(run_id, status, exit_code, resolved.command)


class _Child:
    """The command in its own process group, its output pumped to us and to the log."""

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str], log: IO[bytes]) -> None:
        self.signalled = False
        self._log = log
        self._lock = threading.Lock()
        self._previous: dict[int, Any] = {}
        self._install_handlers()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C reaches gitml, which passes it on
            )
        except BaseException:
            self._restore_handlers()
            raise
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            threading.Thread(
                target=self._pump, args=(self.proc.stdout, _out(sys.stdout)), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self.proc.stderr, _out(sys.stderr)), daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, source: IO[bytes], terminal: IO[bytes] | None) -> None:
        while True:
            try:
                chunk = os.read(source.fileno(), 65536)
            except (OSError, ValueError):  # closed by stop() after a grandchild kept it open
                return
            if not chunk:
                return
            with self._lock:
                self._log.write(chunk)
                self._log.flush()
            if terminal is not None:
                try:
                    terminal.write(chunk)
                    terminal.flush()
                except (OSError, ValueError):
                    pass  # the terminal went away; the log still has everything

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._forward)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.SIGKILL if self.signalled else signum  # a second Ctrl-C: no more waiting
        self.signalled = True
        self._kill(sig)

    def _kill(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def wait(self) -> int:
        while True:
            try:
                code = self.proc.wait(timeout=KILL_GRACE if self.signalled else None)
                break
            except subprocess.TimeoutExpired:
                self._kill(signal.SIGKILL)
        for pump in self._pumps:
            pump.join(timeout=5)  # a grandchild may hold the pipes open; do not hang on it
        return 128 - code if code < 0 else code

    def stop(self) -> None:
        """Restore signal handlers; kill the group if we leave before it ended."""
        self._restore_handlers()
        if self.proc.poll() is None:
            self._kill(signal.SIGKILL)
            self.proc.wait()
        for pump in self._pumps:
            pump.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _out(stream: Any) -> IO[bytes] | None:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return None
    try:
        stream.flush()
    except (OSError, ValueError):
        return None
    return buffer  # type: ignore[no-any-return]


# -- reproduce ------------------------------------------------------------------------


def reproduce(
    run_id: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    env_manager: str | None = None,
    run_name: str | None = None,
    tracking_uri: str | None = None,
) -> ProjectRun:
    """Run again with the exact code (dirty snapshot included), entry point and params of a run.

    ``parameters`` override the recorded ones. The new run records the same
    code commit, in the same experiment, with ``gitml.reproduces`` naming the
    original.
    """
    reader = Client(tracking_uri)
    try:
        original_id = reader.resolve_run_id(run_id)
        original = reader.get_run(original_id)
        entry = original.tags.get(TAG_ENTRY_POINT)
        if entry is None:
            raise InvalidInput(
                f"run {original_id} was not started by 'gitml run' (it has no "
                f"{TAG_ENTRY_POINT} tag), so there is no entry point to run again"
            )
        if original.source.commit is None:
            raise NotFound(
                f"run {original_id} recorded no code commit (its project was not in a Git "
                "repository), so its exact code cannot be restored"
            )
        workdir = Path(tempfile.mkdtemp(prefix="gitml-reproduce-"))
        try:
            reader.restore_code(original_id, workdir / "code")
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    finally:
        reader.close()
    sub = original.tags.get(TAG_SUBDIRECTORY, ".")
    directory = (workdir / "code" / sub).resolve()
    if not directory.is_dir():
        shutil.rmtree(workdir, ignore_errors=True)
        raise NotFound(
            f"run {original_id}'s project folder {sub!r} is not in the code it recorded: its "
            "files were not tracked by Git when it ran (commit them, or git add them, next time)"
        )
    # The original's source tags (URL, version) are carried over below, not re-derived.
    fetched = FetchedProject(directory, workdir, None, None, sub, None)
    given: dict[str, Any] = dict(original.params)
    given.update(parameters or {})
    code = CodeVersion(
        original.source.commit,
        original.source.branch,
        original.source.dirty,
        original.source.snapshot,
    )
    extra = {TAG_SUBDIRECTORY: sub, TAG_REPRODUCES: original_id}
    for key in (TAG_SOURCE_NAME, TAG_REPO_URL, TAG_VERSION):
        if key in original.tags:
            extra[key] = original.tags[key]
    try:
        return _execute(
            fetched,
            original.tags.get(TAG_SOURCE_NAME, str(directory)),
            entry,
            given,
            env_manager=env_manager or original.tags.get(TAG_ENV),
            experiment=original.experiment_id,
            run_name=run_name,
            tracking_uri=tracking_uri,
            code=code,
            extra_tags=extra,
        )
    finally:
        fetched.cleanup()

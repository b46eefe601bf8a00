"""The fluent API MLflow users know: ``start_run``, ``log_metric``, ``end_run``…

Module state (tracking URI, experiment, the stack of active runs) lives here;
every call goes through one lazily built ``Client``. Logging without an active
run starts one, as MLflow does. A run left open at interpreter exit is ended
as FINISHED (MLflow's behaviour); inside ``with start_run()`` an exception
ends it as FAILED, and ``KeyboardInterrupt`` or SIGTERM as KILLED.
"""

from __future__ import annotations

import atexit
import io
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from gitml.errors import InvalidInput

if TYPE_CHECKING:
    from gitml.format.records import Experiment, Run
    from gitml.tracking.client import Client
    from gitml.tracking.entities import RunData, RunInfo

_lock = threading.RLock()
_tracking_uri: str | None = None
_experiment: str | None = None
_client: Client | None = None
_active: list[ActiveRun] = []


class RunTerminated(BaseException):
    """Raised in the main thread when SIGTERM arrives during ``with start_run()``."""


def get_client() -> Client:
    """The ``Client`` the fluent API logs through (made on first use, for the tracking URI)."""
    global _client
    with _lock:
        if _client is None:
            from gitml.tracking.client import Client

            _client = Client(_tracking_uri)
        return _client


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """Where runs go: a path to a Git repository, or a ``gitml server``'s ``http(s)://`` URL.

    None: ``GITML_TRACKING_URI``, else the repository you stand in.
    """
    global _tracking_uri, _client
    with _lock:
        if _client is not None:
            _client.close()
        _tracking_uri = os.fspath(uri) if uri is not None else None
        _client = None


def get_tracking_uri() -> str | None:
    return _tracking_uri or os.environ.get("GITML_TRACKING_URI")


def set_experiment(experiment_name: str) -> Experiment:
    """Make ``experiment_name`` the default for new runs, creating it if needed."""
    global _experiment
    client = get_client()
    exp_id = client.get_or_create_experiment_id(experiment_name)
    _experiment = exp_id
    return client.get_experiment(exp_id)


class ActiveRun:
    """The run ``start_run`` returned; a context manager that ends it."""

    def __init__(
        self, run_id: str, previous_handler: Any = None, started: Run | None = None
    ) -> None:
        self.run_id = run_id
        self._previous_handler = previous_handler
        self._started = started

    @property
    def info(self) -> RunInfo:
        """MLflow's ``run.info`` of the run as it started, as MLflow's ``ActiveRun`` holds
        it: reading it commits nothing, so a short run stays one commit (a resumed run's
        is read once)."""
        if self._started is None:
            self._started = get_run(self.run_id)
        return self._started.info

    @property
    def data(self) -> RunData:
        """MLflow's ``run.data`` (params, latest metrics, tags) of the run as logged so far."""
        return get_run(self.run_id).data

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt | RunTerminated):
            status = "KILLED"
        else:
            status = "FAILED"
        if any(r.run_id == self.run_id for r in _active):
            end_run(status)
        if exc_type is RunTerminated:
            raise SystemExit(128 + signal.SIGTERM)


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
    *,
    experiment: str | None = None,
) -> ActiveRun:
    """Start a new run, or resume ``run_id`` (later logs append to it)."""
    client = get_client()
    with _lock:
        if _active and not nested:
            raise InvalidInput(
                f"run {_active[-1].run_id} is already active; end it with end_run() first, "
                "or start a nested run with start_run(nested=True)"
            )
        parent = _active[-1].run_id if _active and nested else None
        if run_id is None and not _active:
            # `gitml run` names the run it created for the command (MLflow's
            # MLFLOW_RUN_ID); used once, so a later start_run makes a new run.
            run_id = os.environ.pop("GITML_RUN_ID", None) or None
        started = None
        if run_id is not None:
            run_id = client.resolve_run_id(run_id)
            client.update_run(run_id, status="RUNNING")
            if tags:
                client.log_batch(run_id, tags=tags)
        else:
            exp = experiment_id or experiment or _experiment
            if exp is None:
                exp = os.environ.get("GITML_EXPERIMENT_NAME") or None
            entry = _entry_point()
            run = client.create_run(
                exp,
                run_name=run_name,
                tags=tags,
                parent_run_id=parent,
                entry_point=entry,
                commit=False,
            )
            run_id, started = run.id, run
        active = ActiveRun(run_id, _catch_sigterm() if not _active else None, started)
        _active.append(active)
        return active


def end_run(status: str = "FINISHED") -> None:
    """End the innermost active run (its buffered values are committed with it)."""
    with _lock:
        if not _active:
            return
        active = _active.pop()
        try:
            get_client().set_terminated(active.run_id, status)
        finally:
            if active._previous_handler is not None:
                signal.signal(signal.SIGTERM, active._previous_handler)


def active_run() -> ActiveRun | None:
    return _active[-1] if _active else None


def last_active_run_id() -> str | None:
    return _active[-1].run_id if _active else None


def get_run(run_id: str) -> Run:
    return get_client().get_run(run_id)


def search_runs(
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: str = "ACTIVE_ONLY",
    max_results: int = 1000,
    order_by: Sequence[str] | None = None,
    output_format: str = "list",
    experiment_names: Sequence[str] | None = None,
) -> Any:
    """Search runs with MLflow's filter grammar; a list of runs, or a DataFrame.

    Without experiments named, the experiment chosen with ``set_experiment``
    is searched, or every experiment when none was chosen.
    ``output_format="pandas"`` needs ``pip install gitml[pandas]``.
    """
    if output_format not in ("list", "pandas"):
        raise InvalidInput(f"output_format must be 'list' or 'pandas', got {output_format!r}")
    wanted: list[str] | None = None
    if experiment_ids is not None or experiment_names is not None:
        wanted = [*(experiment_ids or ()), *(experiment_names or ())]
    elif _experiment is not None:
        wanted = [_experiment]
    client = get_client()
    runs: list[Run] = []
    token: str | None = None
    while True:  # every page up to max_results, as MLflow's fluent search does
        page = client.search_runs(
            wanted, filter_string, run_view_type, max_results - len(runs), order_by, token
        )
        runs.extend(page)
        token = page.token
        if token is None or len(runs) >= max_results:
            break
    if output_format == "pandas":
        from gitml.query.frame import runs_to_frame

        return runs_to_frame(runs)
    return runs


def current_run_id() -> str:
    """The active run's id; logging with no active run starts one, as MLflow does."""
    if not _active:
        start_run()
    return _active[-1].run_id


def log_param(key: str, value: Any) -> Any:
    return get_client().log_param(current_run_id(), key, value)


def log_params(params: Mapping[str, Any]) -> None:
    get_client().log_batch(current_run_id(), params=params, synchronous=False)


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    get_client().log_metric(current_run_id(), key, value, timestamp, step or 0)


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    client = get_client()
    run_id = current_run_id()
    for key, value in metrics.items():
        client.log_metric(run_id, key, value, timestamp, step or 0)


def set_tag(key: str, value: Any) -> None:
    get_client().set_tag(current_run_id(), key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    get_client().log_batch(current_run_id(), tags=tags, synchronous=False)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    get_client().log_artifact(current_run_id(), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    get_client().log_artifacts(current_run_id(), local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    get_client().log_text(current_run_id(), text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    get_client().log_dict(current_run_id(), dictionary, artifact_file)


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: Mapping[str, Any] | None = None
) -> None:
    """Save a matplotlib figure as an artifact (needs ``pip install gitml[figures]``)."""
    if not hasattr(figure, "savefig"):
        raise InvalidInput(f"log_figure expects a matplotlib Figure, got {type(figure).__name__}")
    suffix = Path(artifact_file).suffix.lstrip(".") or "png"
    buffer = io.BytesIO()
    figure.savefig(buffer, format=suffix, **dict(save_kwargs or {}))
    get_client().log_bytes(current_run_id(), buffer.getvalue(), artifact_file)


def _entry_point() -> str | None:
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name


def _catch_sigterm() -> Any:
    """Turn SIGTERM into ``RunTerminated`` so the run ends KILLED, when we may."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return None  # the program handles SIGTERM itself; leave it alone

    def handler(signum: int, frame: FrameType | None) -> None:
        raise RunTerminated()

    signal.signal(signal.SIGTERM, handler)
    return previous


@atexit.register
def _end_open_runs() -> None:
    while _active:
        try:
            end_run("FINISHED")
        except Exception:  # best effort at exit; the journal still holds the data
            _active.clear()

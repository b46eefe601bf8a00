"""The tracking backend over HTTP, for a ``gitml server``.

``gitml.Client("http://host:5000")`` (or ``GITML_TRACKING_URI``, or
``set_tracking_uri``) is a ``Client`` over this backend; code written against
``gitml.Client`` works unchanged. ``GITML_TRACKING_TOKEN`` is sent as
``Authorization: Bearer``.

Logging is batched and durable, as logging to a repository is:

- ``log_metric``, ``log_param`` and ``set_tag`` validate, append one line to
  this process's journal segment
  (``~/.cache/gitml/http-journal/<host-port>/<pid>-<random>.log``, held with
  an exclusive ``flock`` while the process lives) and return; a background
  thread sends what is pending to ``POST /runs/{id}/log-batch`` in batches of
  at most 1,000 metrics. MLflow's REST client pays a round trip per call.
- Before a batch is sent its extent is journaled (``S from to run``: every
  line of that run with a position in ``[from, to)``), and its ``batch_id`` is
  ``<segment>:<from>-<to>``. The server commits a batch with its id as a
  trailer of the same commit, so a batch sent again (after a timeout, a
  server restart, or by another process recovering this segment) counts once.
  An acknowledged batch is journaled as ``A from to run``.
- A segment whose process died (its lock is free) is an orphan: the next
  client for the same server (at start, and on ``flush``) resends its declared
  batches with the same ids, then the rest, and deletes it.
- Connection errors, 5xx and 429 are retried with exponential backoff and
  jitter for up to ``GITML_HTTP_RETRY_SECONDS`` (default 60); 4xx are not.
  ``flush()`` (and ``set_terminated``, reads of runs, ``close``) sends
  everything first; when the server stays unreachable it raises
  ``ServerUnavailable`` and the values stay in the journal for the next client.

Journal lines (tab-separated): ``M run key step timestamp value``,
``P run key json``, ``T run key json``, ``S from to run``, ``A from to run``;
positions count the M/P/T lines only.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx2

from gitml.artifacts import folder as local_files
from gitml.errors import Conflict, GitmlError, InvalidInput, InvalidRecord, NotFound
from gitml.format.records import Artifact, Experiment, Run, validate
from gitml.git.store import Clock
from gitml.tracking import validation
from gitml.tracking.backend import ArtifactSource, Batch, ExperimentChange, NewRun, RunQuery
from gitml.tracking.entities import Metric, metric_from_json, metric_to_json

if TYPE_CHECKING:
    from gitml.query.search import RunPage

API = "/api/v1"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SEND_INTERVAL = 0.2  # seconds between background sends when batches are not full
ROTATE_LINES = 100_000  # a fully acknowledged segment this long is replaced by a new one
_UPLOAD_CHUNK = 1024 * 1024


class ServerUnavailable(GitmlError):
    """The gitml server could not be reached (or kept failing) for the whole retry window."""


class AccessDenied(GitmlError):
    """The server refused the token (401 without one or with a wrong one, 403 for read-only)."""


def journal_root(uri: str) -> Path:
    """Where clients of the server ``uri`` keep their segments (one folder per host and port)."""
    parts = urlsplit(uri)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{parts.hostname}-{parts.port or parts.scheme}")
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gitml" / "http-journal" / name


# -- the HTTP connection --------------------------------------------------------------------


class _Http:
    """One keep-alive connection pool to the server, with timeouts and retries."""

    def __init__(self, base: str, token: str | None, timeout: float, retry_seconds: float) -> None:
        headers = {"User-Agent": "gitml-rest-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base = base
        self.retry_seconds = retry_seconds
        self._headers = headers
        self._timeout = timeout
        self._pool: httpx2.Client | None = None

    @property
    def _client(self) -> httpx2.Client:
        """The connection pool, opened again if ``close`` closed it (calls work after close)."""
        pool = self._pool
        if pool is None or pool.is_closed:
            pool = self._pool = httpx2.Client(
                base_url=self.base + API,
                headers=self._headers,
                timeout=httpx2.Timeout(self._timeout, connect=min(self._timeout, 5.0)),
                limits=httpx2.Limits(max_connections=16, max_keepalive_connections=16),
            )
        return pool

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
        deadline: float | None = None,
        stream: bool = False,
    ) -> httpx2.Response:
        """The answer (2xx), or the ``GitmlError`` a 4xx means; retries the rest.

        A request that is not ``idempotent`` (creating a run or an experiment)
        is retried only when the connection could not be made, so it never
        runs twice on the server.
        """
        end = deadline if deadline is not None else time.monotonic() + self.retry_seconds
        attempt = 0
        headers = {"Content-Type": "application/json"} if body is not None else None
        data = json.dumps(body).encode() if body is not None else content
        while True:
            problem: str
            try:
                request = self._client.build_request(
                    method, path, content=data, params=params, headers=headers
                )
                response = self._client.send(request, stream=stream)
            except httpx2.ConnectError as exc:
                problem = f"cannot connect: {exc}"
            except httpx2.TransportError as exc:
                if not idempotent:
                    raise ServerUnavailable(f"{method} {self.base}{API}{path}: {exc}") from exc
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    response.read()
                if response.status_code not in RETRY_STATUSES:
                    raise _answer_error(method, path, response)
                problem = f"HTTP {response.status_code}: {_message(response)}"
            attempt += 1
            # Exponential backoff with full jitter, capped at 2 s between tries.
            pause = random.uniform(0, min(2.0, 0.05 * 2**attempt))
            if time.monotonic() + pause > end:
                raise ServerUnavailable(
                    f"{method} {self.base}{API}{path} failed after {attempt} tries: {problem}"
                )
            time.sleep(pause)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _run(data: dict[str, Any]) -> Run:
    """A run the server sent, its metrics that are not finite read back from their names."""
    for metric in data.get("metrics", {}).values():
        metric["value"] = metric_from_json(metric["value"])
    return Run.model_validate(data)


def _message(response: httpx2.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except (ValueError, AttributeError):
        return response.text[:200]


def _answer_error(method: str, path: str, response: httpx2.Response) -> GitmlError:
    status, message = response.status_code, _message(response)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (401, 403):
        return AccessDenied(
            f"{message} (the server answered {status}; set GITML_TRACKING_TOKEN to a token "
            "from its --token-file)"
        )
    if status < 500:
        return InvalidInput(message)
    return GitmlError(f"{method} {path}: HTTP {status}: {message}")


# -- the journal ------------------------------------------------------------------------------


@dataclass
class _Entry:
    position: int
    kind: str  # "M", "P" or "T"
    key: str
    value: Any  # (step, timestamp, value) for M; the string for P and T


@dataclass
class _Batch:
    run_id: str
    start: int
    end: int
    entries: list[_Entry]
    segment: _Segment

    @property
    def batch_id(self) -> str:
        return f"{self.segment.name}:{self.start}-{self.end}"

    def body(self) -> dict[str, Any]:
        return _batch_body(self.entries, self.batch_id)


def _batch_body(entries: Iterable[_Entry], batch_id: str) -> dict[str, Any]:
    """The ``log-batch`` request that sends ``entries`` under ``batch_id``."""
    metrics = []
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    for entry in entries:
        if entry.kind == "M":
            step, timestamp, value = entry.value
            metrics.append(
                {
                    "key": entry.key,
                    "value": metric_to_json(value),
                    "step": step,
                    "timestamp": timestamp,
                }
            )
        elif entry.kind == "P":
            params[entry.key] = entry.value
        else:
            tags[entry.key] = entry.value
    return {"metrics": metrics, "params": params, "tags": tags, "batch_id": batch_id}


class _Segment:
    """One journal file, locked by this process while it writes or recovers it."""

    def __init__(self, path: Path, fd: int, lines: int = 0) -> None:
        self.path = path
        self.name = path.stem
        self.fd = fd
        self.lines = lines  # M/P/T lines so far: the next line's position

    @classmethod
    def create(cls, directory: Path) -> _Segment:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{os.getpid()}-{secrets.token_hex(6)}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(path, fd)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def declare(self, batch: _Batch) -> None:
        self.write(f"S\t{batch.start}\t{batch.end}\t{batch.run_id}\n".encode())

    def acknowledge(self, batch: _Batch) -> None:
        self.write(f"A\t{batch.start}\t{batch.end}\t{batch.run_id}\n".encode())

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)


def _record(kind: str, run_id: str, key: str, value: Any) -> bytes:
    if kind == "M":
        step, timestamp, number = value
        return f"M\t{run_id}\t{key}\t{step}\t{timestamp}\t{number!r}\n".encode()
    return f"{kind}\t{run_id}\t{key}\t{json.dumps(value)}\n".encode()


def _orphans(directory: Path) -> Iterator[_Segment]:
    """Segments whose process died, locked by us; each must be discarded or closed."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.log")):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its process is alive (or another client is recovering it)
            continue
        if os.fstat(fd).st_nlink == 0:  # finished and deleted while we waited
            os.close(fd)
            continue
        yield _Segment(path, fd)


def _pending_batches(segment: _Segment) -> list[_Batch]:
    """What an orphan still owes the server: its unacknowledged batches, then the rest.

    Declared batches keep their extent (so their ids, which the server may
    have applied already); lines no batch covers become new batches, declared
    in the orphan before they are sent. A torn last line is dropped.
    """
    by_run: dict[str, list[_Entry]] = {}
    declared: dict[tuple[int, int, str], bool] = {}
    position = 0
    for raw in segment.path.read_bytes().split(b"\n")[:-1]:
        fields = raw.decode().split("\t")
        kind = fields[0]
        if kind == "M":
            run_id, key, step, timestamp, number = fields[1:6]
            value: Any = (int(step), int(timestamp), float(number))
        elif kind in ("P", "T"):
            run_id, key, text = fields[1:4]
            value = json.loads(text)
        elif kind in ("S", "A"):
            extent = (int(fields[1]), int(fields[2]), fields[3])
            declared[extent] = kind == "A" or declared.get(extent, False)
            continue
        else:
            continue
        by_run.setdefault(run_id, []).append(_Entry(position, kind, key, value))
        position += 1
    segment.lines = position
    batches: list[_Batch] = []
    covered: dict[str, list[tuple[int, int]]] = {}
    for (start, end, run_id), acked in declared.items():
        covered.setdefault(run_id, []).append((start, end))
        if not acked:
            entries = [e for e in by_run.get(run_id, []) if start <= e.position < end]
            batches.append(_Batch(run_id, start, end, entries, segment))
    for run_id, entries in by_run.items():
        spans = covered.get(run_id, [])
        rest = [e for e in entries if not any(s <= e.position < t for s, t in spans)]
        while rest:
            take = _batch_length(rest)
            end = rest[take].position if take < len(rest) else position
            batch = _Batch(run_id, rest[0].position, end, rest[:take], segment)
            segment.declare(batch)
            batches.append(batch)
            rest = rest[take:]
    return batches


def _batch_length(entries: Sequence[_Entry]) -> int:
    """How many of ``entries`` (from the first) fit in one log-batch request."""
    metrics = params = tags = 0
    for count, entry in enumerate(entries):
        if entry.kind == "M":
            metrics += 1
        elif entry.kind == "P":
            params += 1
        else:
            tags += 1
        if (
            metrics > validation.MAX_METRICS_PER_BATCH
            or params > validation.MAX_PARAMS_TAGS_PER_BATCH
            or tags > validation.MAX_PARAMS_TAGS_PER_BATCH
            or metrics + params + tags > validation.MAX_ENTITIES_PER_BATCH
        ):
            return count
    return len(entries)


@dataclass
class _Outbox:
    """What this process logged and the server has not acknowledged yet."""

    pending: dict[str, list[_Entry]] = field(default_factory=dict)
    unacked: list[_Batch] = field(default_factory=list)
    count: int = 0  # entries in ``pending``


# -- the backend ------------------------------------------------------------------------------


class HttpBackend:
    """The tracking backend over a gitml server's REST API."""

    remote = True

    def __init__(self, uri: str, *, clock: Clock | None = None) -> None:
        if not uri.startswith(("http://", "https://")):
            raise InvalidInput(f"the HTTP backend needs an http(s):// tracking URI, got {uri!r}")
        self.uri = uri.rstrip("/")
        self._clock = clock or time.time
        self._http = _Http(
            self.uri,
            os.environ.get("GITML_TRACKING_TOKEN") or None,
            float(os.environ.get("GITML_HTTP_TIMEOUT", "30")),
            float(os.environ.get("GITML_HTTP_RETRY_SECONDS", "60")),
        )
        self._dir = journal_root(self.uri)
        self._lock = threading.RLock()  # the outbox and the segment; held for microseconds
        self._send_lock = threading.Lock()  # one sender at a time
        self._segment: _Segment | None = None
        self._outbox = _Outbox()
        self._known_params: dict[str, dict[str, str]] = {}
        self._experiment_ids: dict[str, str] = {}
        self._error: BaseException | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._sender: threading.Thread | None = None
        self.recovered: list[str] = []
        self._recovered_once = False
        self._start_sender()
        _backends.add(self)
        weakref.finalize(self, self._http.close)
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def location(self) -> str:
        return self.uri

    @property
    def journal_dir(self) -> Path:
        return self._dir

    def now(self) -> int:
        return int(self._clock() * 1000)

    # -- experiments ----------------------------------------------------------------------

    def create_experiment(self, name: str, tags: dict[str, str]) -> str:
        body = {"name": name, "tags": tags}
        return str(self._http.json("POST", "/experiments", body=body, idempotent=False)["id"])

    def get_experiment(self, experiment_id: str) -> Experiment:
        found = self._http.json("GET", f"/experiments/{_seg(experiment_id)}")
        return Experiment.model_validate(found)

    def list_experiments(self, problems: list[InvalidRecord] | None) -> list[Experiment]:
        """Every experiment the server lists (it reads the records, and reports bad ones)."""
        return [Experiment.model_validate(e) for e in self._http.json("GET", "/experiments")]

    def get_or_create_experiment_id(self, name_or_id: str | None) -> str:
        if name_or_id is None:
            return str(self._http.json("GET", "/default-experiment")["id"])
        found = self._experiment_ids.get(name_or_id)
        if found is None:
            try:
                found = self.get_experiment(name_or_id).id
            except NotFound:
                try:
                    found = self.create_experiment(name_or_id, {})
                except Conflict:  # another client created it first
                    found = self.get_experiment(name_or_id).id
            self._experiment_ids[name_or_id] = found
        return found

    def find_experiment_id(self, name_or_id: str) -> str:
        # The server looks an experiment up by id, and else by name.
        return self.get_experiment(name_or_id).id

    def update_experiment(self, experiment_id: str, change: ExperimentChange) -> None:
        body = {
            "name": change.name,
            "lifecycle_stage": change.lifecycle_stage,
            "set_tags": dict(change.set_tags),
            "delete_tags": list(change.delete_tags),
        }
        # Removing a tag a second time is an error: that request is not retried.
        path = f"/experiments/{_seg(experiment_id)}"
        self._http.request("PATCH", path, body=body, idempotent=not change.delete_tags)
        self._experiment_ids.clear()  # a name may now mean another experiment, or none

    def run_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = self._http.json("GET", "/run-counts")
        return counts

    def broken_records(self) -> list[str]:
        found: list[str] = self._http.json("GET", "/broken-records")
        return found

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, new: NewRun) -> Run:
        """A new run on the server (one round trip; the server commits it at once)."""
        body = {
            "experiment_id": new.experiment_id,
            "run_name": new.name,
            "start_time": new.start_time,
            "tags": new.tags,
            "parent_run_id": new.parent_run_id,
            "entry_point": new.entry_point,
        }
        run = _run(self._http.json("POST", "/runs", body=body, idempotent=False))
        self._known_params[run.id] = dict(run.params)
        return run

    def get_run(self, run_id: str) -> Run:
        self.flush()
        return _run(self._http.json("GET", f"/runs/{_seg(run_id)}"))

    def resolve_run_id(self, prefix: str) -> str:
        return self.get_run(prefix).id  # the server resolves a prefix as the CLI does

    def search_runs(self, query: RunQuery) -> RunPage:
        from gitml.query.search import RunPage

        self.flush()
        wanted = query.experiment_ids
        body = {
            "experiment_ids": None if wanted is None else list(wanted),
            "filter": query.filter_string,
            "run_view_type": query.run_view_type,
            "max_results": query.max_results,
            "order_by": list(query.order_by or []),
            "page_token": query.page_token,
        }
        page = self._http.json("POST", "/runs/search", body=body)
        runs = [_run(r) for r in page["runs"]]
        return RunPage(runs, page.get("next_page_token"))

    def list_runs(
        self, experiment_ids: Sequence[str] | None, include_deleted: bool
    ) -> tuple[list[Run], list[InvalidRecord]]:
        """Every run (newest first); malformed records are the server's to report."""
        view = "ALL" if include_deleted else "ACTIVE_ONLY"
        return self._every_run(experiment_ids, "", view), []

    def get_child_runs(self, run_id: str, run_view_type: str) -> list[Run]:
        return self._every_run(None, f"tags.mlflow.parentRunId = '{run_id}'", run_view_type)

    def _every_run(
        self, experiments: Sequence[str] | None, filter_string: str, view: str
    ) -> list[Run]:
        runs: list[Run] = []
        token: str | None = None
        while True:
            page = self.search_runs(
                RunQuery(experiments, filter_string, view, 50_000, page_token=token)
            )
            runs.extend(page)
            token = page.token
            if token is None:
                return runs

    # -- logging (journaled, sent in batches) -------------------------------------------

    def log_batch(self, run_id: str, batch: Batch) -> None:
        """Journal the values and return; a background thread sends them with others.

        A batch with an id is sent at once, alone, under that id (after what
        was journaled before it).
        """
        items: list[tuple[str, str, Any]] = [("M", key, point) for key, point in batch.metrics]
        if batch.params:
            items.extend(self._checked_params(run_id, batch.params))
        if batch.tags:
            items.extend(("T", k, v) for k, v in batch.tags.items())
        if batch.batch_id is not None:
            self.flush()
            entries = [_Entry(n, kind, key, value) for n, (kind, key, value) in enumerate(items)]
            body = _batch_body(entries, batch.batch_id)
            self._http.request("POST", f"/runs/{_seg(run_id)}/log-batch", body=body)
            return
        self._append(run_id, items)
        if batch.synchronous:
            self.flush()

    def _checked_params(self, run_id: str, values: dict[str, str]) -> list[tuple[str, str, Any]]:
        with self._lock:
            known = self._known_params.setdefault(run_id, {})
            for key, value in values.items():
                if known.get(key, value) != value:
                    raise Conflict(
                        f"param '{key}' of run {run_id} is already '{known[key]}'; "
                        f"a param cannot change (got '{value}'). Log it under another key"
                    )
            known.update(values)
        return [("P", k, v) for k, v in values.items()]

    def _append(self, run_id: str, items: Sequence[tuple[str, str, Any]]) -> None:
        """Journal ``items`` (one write) and queue them for the sender."""
        self._raise_deferred()
        data = b"".join(_record(kind, run_id, key, value) for kind, key, value in items)
        with self._lock:
            segment = self._segment
            if segment is None:
                segment = self._segment = _Segment.create(self._dir)
            segment.write(data)
            queue = self._outbox.pending.get(run_id)
            if queue is None:
                queue = self._outbox.pending[run_id] = []
            position = segment.lines
            for kind, key, value in items:
                queue.append(_Entry(position, kind, key, value))
                position += 1
            segment.lines = position
            self._outbox.count += len(items)
            full = self._outbox.count >= validation.MAX_METRICS_PER_BATCH
        if full:
            self._wake.set()

    # -- sending ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send everything logged so far (and what dead processes left), then return.

        Raises ``ServerUnavailable`` when the server stays unreachable for the
        retry window; what was not sent stays journaled for the next client.
        """
        self._raise_deferred()
        deadline = time.monotonic() + self._http.retry_seconds
        with self._send_lock:
            self._drain(deadline)
            self._recover(deadline)
        self._raise_deferred()

    def _raise_deferred(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _next_batch(self) -> _Batch | None:
        """Move the next batch out of ``pending``, declared in the journal; None when idle."""
        with self._lock:
            if self._outbox.unacked:
                return self._outbox.unacked[0]
            segment = self._segment
            for run_id, queue in self._outbox.pending.items():
                if not queue or segment is None:
                    continue
                take = _batch_length(queue)
                entries = queue[:take]
                end = queue[take].position if take < len(queue) else segment.lines
                batch = _Batch(run_id, entries[0].position, end, entries, segment)
                del queue[:take]
                if not queue:
                    del self._outbox.pending[run_id]
                self._outbox.count -= take
                segment.declare(batch)
                self._outbox.unacked.append(batch)
                return batch
            return None

    def _drain(self, deadline: float | None) -> None:
        """Send this process's batches until none is left (call with ``_send_lock``)."""
        while (batch := self._next_batch()) is not None:
            refused = self._send(batch, deadline)
            if refused is not None:
                self._error = refused  # raised by this client's next call
            with self._lock:
                self._outbox.unacked.remove(batch)
        self._rotate()

    def _send(self, batch: _Batch, deadline: float | None) -> GitmlError | None:
        """Send one batch until the server has it; what it refused for good, if it did.

        A run that does not exist or an invalid value is a final refusal:
        sending it again cannot help. A conflict (a param the run already has
        with another value) is not taken on trust: the batch is sent again
        under the same id until the server says it holds it ("applied
        before"), since only then are its other values known to be committed.
        """
        end = deadline if deadline is not None else time.monotonic() + self._http.retry_seconds
        path = f"/runs/{_seg(batch.run_id)}/log-batch"
        refused: GitmlError | None = None
        while True:
            try:
                self._http.request("POST", path, body=batch.body(), deadline=end)
            except (NotFound, InvalidInput) as exc:
                refused = exc
            except Conflict as exc:
                if time.monotonic() > end:
                    raise ServerUnavailable(
                        f"POST {self.uri}{API}{path}: batch {batch.batch_id} still conflicts "
                        f"after the retry window: {exc}"
                    ) from exc
                refused = exc
                continue
            break
        batch.segment.acknowledge(batch)
        return refused

    def _rotate(self) -> None:
        """Replace a long, fully acknowledged segment so the journal does not grow forever."""
        with self._lock:
            segment = self._segment
            if (
                segment is not None
                and segment.lines >= ROTATE_LINES
                and not self._outbox.pending
                and not self._outbox.unacked
            ):
                segment.discard()
                self._segment = None

    def _recover(self, deadline: float | None) -> None:
        """Resend what dead clients of this server left in their segments."""
        for orphan in _orphans(self._dir):
            sent = 0
            try:
                for batch in _pending_batches(orphan):
                    refused = self._send(batch, deadline)
                    if refused is None:
                        sent += len(batch.entries)
                    else:  # another process's values: reported, not raised here
                        self.recovered.append(f"{orphan.name}: the server refused: {refused}")
            except BaseException:
                os.close(orphan.fd)  # keep it for the next client
                raise
            orphan.discard()
            if sent:
                self.recovered.append(f"{orphan.name}: resent {sent} values")

    def _start_sender(self) -> None:
        if self._sender is None:
            self._sender = threading.Thread(
                target=_send_loop,
                args=(weakref.ref(self), self._wake, self._closed),
                name="gitml-http-sender",
                daemon=True,
            )
            self._sender.start()

    def _send_in_background(self) -> None:
        # One try with a short window: a down server must not hold the send
        # lock that ``flush`` waits for; the next tick tries again.
        if not self._send_lock.acquire(blocking=False):
            return
        try:
            deadline = time.monotonic() + min(5.0, self._http.retry_seconds)
            self._drain(deadline)
            if not self._recovered_once:  # what dead clients left: once the server answers
                self._recover(deadline)
                self._recovered_once = True
        except ServerUnavailable:
            pass  # journaled; retried on the next tick, and by flush
        except GitmlError as exc:
            self._error = exc
        finally:
            self._send_lock.release()

    def close(self) -> None:
        """Send what is pending, stop the background sender and close the connections.

        Calls still work after (the fluent API may end a run at exit after this).
        """
        try:
            self.flush()
        finally:
            self._closed.set()
            self._wake.set()
            self._http.close()

    def recover(self) -> list[str]:
        with self._send_lock:
            self._recover(time.monotonic() + self._http.retry_seconds)
        return self.recovered

    # -- run state --------------------------------------------------------------------------

    def set_terminated(self, run_id: str, status: str, end_time: int) -> None:
        self.flush()
        self._patch(run_id, {"status": status, "end_time": end_time})

    def update_run(self, run_id: str, status: str | None, name: str | None) -> None:
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if name is not None:
            body["run_name"] = name
        self.flush()
        self._patch(run_id, body)

    def _patch(self, run_id: str, body: dict[str, Any]) -> None:
        self._http.request("PATCH", f"/runs/{_seg(run_id)}", body=body)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.flush()
        self._http.request("DELETE", f"/runs/{_seg(run_id)}/tags/{_seg(key)}")

    def set_lifecycle(self, run_id: str, stage: str) -> None:
        if stage == "deleted":
            self.flush()
            self._http.request("DELETE", f"/runs/{_seg(run_id)}")
        else:
            self._http.request("POST", f"/runs/{_seg(run_id)}/restore")

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        self.flush()
        found = self._http.json("GET", f"/runs/{_seg(run_id)}/metrics/{quote(key)}")
        return [
            Metric(key, metric_from_json(p["value"]), p["timestamp"], p["step"])
            for p in found["points"]
        ]

    def restore_code(self, run_id: str, into: str | os.PathLike[str]) -> int:
        raise InvalidInput(
            f"restoring code needs the repository itself: clone the server's repository "
            f"and run 'gitml runs restore-code {run_id}' there"
        )

    # -- artifacts --------------------------------------------------------------------------

    def log_artifacts(self, run_id: str, items: Sequence[ArtifactSource]) -> None:
        """PUT each file, streamed; a PUT is idempotent, so it is retried like a read."""
        for path, source in items:
            content = source if isinstance(source, bytes) else _ReadAgain(source)
            url = f"/runs/{_seg(run_id)}/artifacts/{quote(path)}"
            self._http.request("PUT", url, content=content)

    def list_artifacts(self, run_id: str, path: str | None) -> list[Artifact]:
        params = {"path": path} if path is not None else None
        listed = self._http.json("GET", f"/runs/{_seg(run_id)}/artifacts", params=params)
        where = f"{self._http.base} run {run_id}"
        return [validate(Artifact, a, where=where, path="artifacts.yaml") for a in listed]

    def read_artifact(self, run_id: str, path: str) -> bytes:
        wanted = next((a for a in self.list_artifacts(run_id, path) if a.path == path), None)
        if wanted is None:
            raise NotFound(f"run {run_id} has no artifact '{path}'")
        data = self._http.request("GET", f"/runs/{_seg(run_id)}/artifacts/{quote(path)}").content
        return local_files.verify(data, wanted.sha256, f"run {run_id} artifact '{path}'")

    def download_artifact(self, run_id: str, artifact: Artifact, target: Path) -> None:
        """Stream one artifact to ``target``, checked against its sha256 before it lands."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        response = self._http.request(
            "GET", f"/runs/{_seg(run_id)}/artifacts/{quote(artifact.path)}", stream=True
        )
        try:
            with open(partial, "wb") as f:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    f.write(chunk)
        finally:
            response.close()
        if digest.hexdigest() != artifact.sha256:
            partial.unlink()
            raise GitmlError(
                f"run {run_id} artifact '{artifact.path}': the download does not match "
                f"its sha256 {artifact.sha256}"
            )
        partial.replace(target)

    def _after_fork_in_child(self) -> None:
        """A forked child starts with an empty outbox: the parent sends what it logged."""
        if self._segment is not None:
            os.close(self._segment.fd)
        self._segment = None
        self._outbox = _Outbox()
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._sender = None
        self._start_sender()


class _ReadAgain:
    """A file's bytes in chunks, from the start each time it is iterated (for retries)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            while chunk := f.read(_UPLOAD_CHUNK):
                yield chunk


def _seg(value: str) -> str:
    """One path segment of a URL (a run id, a key): nothing in it can change the route."""
    return quote(value, safe="")


def _send_loop(
    ref: weakref.ref[HttpBackend], wake: threading.Event, closed: threading.Event
) -> None:
    """The background sender; it holds the backend weakly so a dropped client is freed."""
    while not closed.is_set():
        backend = ref()
        if backend is None:
            return
        backend._send_in_background()
        del backend
        wake.wait(SEND_INTERVAL)
        wake.clear()


_backends: weakref.WeakSet[HttpBackend] = weakref.WeakSet()


def _close_at_exit(ref: weakref.ref[HttpBackend]) -> None:
    backend = ref()
    if backend is not None:
        # A server still unreachable after the retry window: the journal keeps
        # the values and the next client of this server sends them.
        with contextlib.suppress(ServerUnavailable):
            backend.close()


def _reset_after_fork() -> None:
    for backend in list(_backends):
        backend._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork)

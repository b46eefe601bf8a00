"""The reconciler: serve whatever a stage branch declares.

Like Argo CD and Flux, it compares the desired state (the stage branch's tip)
with what it applied, and converges: every declared version is fetched,
verified by sha256, loaded and health-checked off the serving path, and only
then does one reference swap put the new ``Revision`` in place. A request
holds the revision it started with, so in-flight requests finish on the old
models, which are released when the last of them returns.

A revision that fails (invalid declaration, missing or corrupt files, a
model that does not load or fails its input example) is never served: the
last good revision keeps serving, ``status()`` says Degraded with the
reason, and that commit is not tried again until the branch moves. Not
being able to *read* the remote (``FetchError``: network, a ref not pushed
yet) says nothing about the commit, so it is retried on the next pass.

The reconciler keeps no state beyond a cache (the followed repository and
the loaded models), so any number of replicas following the same branch
converge on the same revision.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import math
import os
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import GitmlError, InvalidInput, NotFound
from .records import Config, ModelVersion, StageDeclaration
from .scoring import Predictor
from .store import Store

log = logging.getLogger("gitml.reconcile")

MODELS_REF = "refs/gitml/models/"
RUNS_REF = "refs/gitml/runs/"
HISTORY = 20
# Latency histogram bounds in seconds, as Prometheus clients default to, plus 1 ms.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))


class ReconcileError(GitmlError):
    """Why a revision cannot be served; the last good revision keeps serving."""


class FetchError(ReconcileError):
    """The remote could not be read (network, a push half-way): retried on the next pass.

    Unlike a ``ReconcileError`` about the revision itself, this says nothing
    about the commit, so it does not mark the commit failed.
    """


@dataclass(frozen=True)
class LoadedVersion:
    """One version of a model, loaded and health-checked."""

    model: str
    version: int
    weight: int
    digest: str
    run_id: str
    predictor: Predictor
    healthy: bool = True

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.model, self.version, self.digest)


class ModelRoute:
    """Requests for one model, split between its versions by weight.

    The split is smooth weighted round-robin, so a 90/10 canary sends exactly
    10 of every 100 requests to the canary, spread out rather than in a burst,
    and two replicas with the same weights behave the same.
    """

    def __init__(self, versions: list[LoadedVersion]) -> None:
        self.versions = tuple(versions)
        self._by_number = {v.version: v for v in versions}
        self._schedule = _smooth_schedule([v.weight for v in versions])
        self._next = itertools.count()

    def pick(self, pinned: int | None = None) -> LoadedVersion:
        if pinned is not None:
            chosen = self._by_number.get(pinned)
            if chosen is None:
                served = ", ".join(str(v) for v in sorted(self._by_number))
                raise NotFound(f"version {pinned} is not served (served: {served})")
            return chosen
        # next() on itertools.count is atomic under the GIL: no lock on the hot path.
        return self.versions[self._schedule[next(self._next) % len(self._schedule)]]


def _smooth_schedule(weights: list[int]) -> list[int]:
    """Indexes in nginx's smooth weighted round-robin order, one cycle long."""
    live = [w for w in weights if w > 0]
    if not live:
        return [0]
    step = math.gcd(*live)
    scaled = [w // step for w in weights]
    current = [0] * len(weights)
    total = sum(scaled)
    order = []
    for _ in range(total):
        for i, w in enumerate(scaled):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(best)
    return order


@dataclass(frozen=True)
class Revision:
    """What is being served: a stage commit and its models."""

    commit: str
    models: dict[str, ModelRoute]
    applied_at: float


@dataclass(frozen=True)
class Outcome:
    """One reconcile pass that tried a revision."""

    revision: str
    result: str  # "Synced" or "Failed"
    seconds: float
    at: float
    error: str | None = None


@dataclass
class Metrics:
    """Counters for ``/metrics`` (Prometheus text format)."""

    requests: collections.Counter[tuple[str, int, int]] = field(default_factory=collections.Counter)
    latency_sum: collections.defaultdict[tuple[str, int], float] = field(
        default_factory=lambda: collections.defaultdict(float)
    )
    latency_buckets: collections.Counter[tuple[str, int, float]] = field(
        default_factory=collections.Counter
    )
    reconciles: collections.Counter[str] = field(default_factory=collections.Counter)
    reconcile_seconds: float = 0.0

    def observe(self, model: str, version: int, status: int, seconds: float) -> None:
        self.requests[(model, version, status)] += 1
        self.latency_sum[(model, version)] += seconds
        # One counter per request (the smallest bucket that holds it); /metrics
        # adds them up into Prometheus's cumulative buckets when it is read.
        self.latency_buckets[(model, version, BUCKETS[bisect.bisect_left(BUCKETS, seconds)])] += 1


Loader = Callable[[ModelVersion, Path], Predictor]


class Source:
    """Where the followed stage branch and its records come from: the local repository."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def refresh(self, stage: str) -> None:
        """Bring in the latest stage branch (a local repository is always current)."""

    def fetch_for(self, declared: dict[str, StageDeclaration]) -> None:
        """Bring in what the declarations need (a local repository has it)."""

    def describe(self) -> str:
        return str(self.store.root)


class RemoteSource(Source):
    """A remote followed through a local bare cache, with the real ``git fetch``.

    Only the stage branch, the declared models' refs and their versions' run
    refs are fetched. The cache is a mirror: the remote is the truth, and
    nothing but fetches writes to it, so a ref takes whatever value the remote
    has, fast-forward or not (a stage branch reset to undo a bad push is
    still what it declares). What must not happen is an *older* view of the
    remote overwriting a newer one: ``--workers N`` share one cache, and a
    fetch that listed the remote before another's landed would rewind the
    branch (``+`` on a plain ``git fetch`` does exactly that, and without
    ``+`` a rewound remote is never followed). So each fetch is a
    compare-and-swap of the cache's refs:

    1. read the refs' current values;
    2. fetch into a private scratch namespace (``refs/gitml-reconcile/<pid>-<id>/``,
       deleted afterwards; a killed process's are deleted by the next one);
    3. move the real refs with one ``git update-ref --stdin`` transaction
       whose old values are those read in step 1.

    If another fetch moved a ref in between, the transaction fails and the
    whole thing is tried again. A write succeeds only when nothing was
    written since its step 1, which came before its listing of the remote;
    so every value written comes from a newer listing than the one before,
    and the cache never goes back in time.
    """

    ATTEMPTS = 5

    def __init__(self, url: str, cache: Path) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / "HEAD").exists():
            _git(cache, "init", "-q", "--bare")
        super().__init__(Store(cache))
        # git runs in the cache: a relative path to a local remote must not mean a path in it.
        self.url = str(Path(url).resolve()) if Path(url).exists() else url
        self._drop_orphaned_scratch()

    def refresh(self, stage: str) -> None:
        self._mirror([f"refs/heads/gitml/{stage}"])

    def fetch_for(self, declared: dict[str, StageDeclaration]) -> None:
        self._mirror([f"{MODELS_REF}{name}" for name in sorted(declared)])
        runs = set()
        for name, declaration in declared.items():
            for served in declaration.versions:
                version = _version_record(self.store, name, served.version)
                runs.add(version.run_id)
        self._mirror([f"{RUNS_REF}{r}" for r in sorted(runs)])

    def _mirror(self, refs: list[str]) -> None:
        """Set ``refs`` in the cache to the remote's values, by compare-and-swap."""
        if not refs:
            return
        root = self.store.root
        # The common case, nothing moved, costs one ls-remote and writes nothing.
        listed = _remote_values(root, self.url, refs)
        missing = [ref for ref in refs if ref not in listed]
        if missing:
            raise FetchError(f"{self.url} has no {missing[0]}")
        if all(listed[ref] == self.store.tip(ref) for ref in refs):
            return
        for _ in range(self.ATTEMPTS):
            before = {ref: self.store.tip(ref) for ref in refs}
            scratch = f"{SCRATCH}{os.getpid()}-{uuid.uuid4().hex}/"
            try:
                _git(
                    root, "fetch", "-q", "--no-tags", "--no-write-fetch-head", self.url,
                    *[f"+{ref}:{scratch}{ref}" for ref in refs],
                )  # fmt: skip
                fetched = _ref_values(root, scratch)
                commands = [
                    f"update {ref} {fetched[scratch + ref]} {before[ref] or ZERO}\n"
                    for ref in refs
                    if fetched[scratch + ref] != before[ref]
                ]
                if not commands or _git_ok(root, ["update-ref", "--stdin"], "".join(commands)):
                    return
            finally:
                _delete_refs(root, scratch)
        raise FetchError(
            f"{self.url}: refs kept moving during {self.ATTEMPTS} fetches; trying again"
        )

    def _drop_orphaned_scratch(self) -> None:
        """Scratch refs of processes that died mid-fetch (killed): nobody else removes them."""
        orphans = {}
        for name, sha in _ref_values(self.store.root, SCRATCH).items():
            pid = name[len(SCRATCH) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                orphans[name] = sha
        if orphans:
            commands = "".join(f"delete {n}\n" for n in orphans)
            _git_ok(self.store.root, ["update-ref", "--stdin"], commands)

    def describe(self) -> str:
        return self.url


ZERO = "0" * 40
SCRATCH = "refs/gitml-reconcile/"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise FetchError(f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _git_ok(cwd: Path, args: list[str], stdin: str) -> bool:
    done = subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    return done.returncode == 0


def _remote_values(cwd: Path, url: str, refs: list[str]) -> dict[str, str]:
    """What ``refs`` point to on the remote (a ref it lacks is left out)."""
    out = _git(cwd, "ls-remote", url, *refs)
    wanted = set(refs)
    pairs = (line.split("\t", 1) for line in out.splitlines() if line)
    return {name: sha for sha, name in pairs if name in wanted}


def _ref_values(cwd: Path, prefix: str) -> dict[str, str]:
    out = _git(cwd, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def _delete_refs(cwd: Path, prefix: str) -> None:
    """Drop a scratch namespace (its objects stay: the real refs reach them)."""
    names = _ref_values(cwd, prefix)
    if names:
        _git_ok(cwd, ["update-ref", "--stdin"], "".join(f"delete {n}\n" for n in names))


def _version_record(store: Store, name: str, number: int) -> ModelVersion:
    from .records import parse
    from .registry import version_path

    tip = store.tip(MODELS_REF + name)
    if tip is None:
        raise ReconcileError(f"model '{name}' is not registered")
    path = version_path(number)
    data = store.snapshot(tip).read(path)
    if data is None:
        raise ReconcileError(f"model '{name}' has no version {number}")
    return parse(ModelVersion, data, where=MODELS_REF + name, path=path)


class Reconciler:
    """Follows one stage branch and holds the revision being served."""

    def __init__(
        self,
        source: Source,
        stage: str,
        config: Config,
        *,
        allow_empty: bool = False,
        loader: Loader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from .stages import check_stage

        self.source = source
        self.store = source.store
        self.stage = check_stage(stage)
        self.config = config
        self.allow_empty = allow_empty
        self.loader = loader or load_version
        self.clock = clock
        self.metrics = Metrics()
        self.current: Revision | None = None
        self.desired: str | None = None
        self.attempted: str | None = None
        self.failed: str | None = None  # the commit that failed, not retried until the tip moves
        self.failure: str | None = None  # why it failed
        self.fetch_error: str | None = None  # the last pass could not read the source
        self.outcomes: collections.deque[Outcome] = collections.deque(maxlen=HISTORY)
        self._lock = threading.Lock()  # one reconcile pass at a time
        self._wake = threading.Event()
        self._stop = threading.Event()

    @property
    def last_error(self) -> str | None:
        """Why the source could not be read on the last pass, else why the tip failed."""
        return self.fetch_error or self.failure

    # -- one pass -------------------------------------------------------------

    def reconcile(self) -> Outcome | None:
        """Converge once; returns the outcome if a revision was tried, None if nothing to do."""
        with self._lock:
            try:
                self.source.refresh(self.stage)
            except FetchError as exc:
                self.fetch_error = str(exc)
                _event("fetch_failed", stage=self.stage, error=str(exc))
                return None
            tip = self.store.tip(f"refs/heads/gitml/{self.stage}")
            self.fetch_error = None if tip else f"branch gitml/{self.stage} does not exist"
            self.desired = tip
            if tip is None:
                return None  # whatever is served keeps serving
            if self.current is not None and self.current.commit == tip:
                # Back on the served commit (a bad commit reverted by a reset): synced.
                self.attempted, self.failed, self.failure = tip, None, None
                return None
            if tip == self.failed:
                return None  # Argo CD's rule: a failed commit waits for the branch to move
            return self._apply(tip)

    def _apply(self, commit: str) -> Outcome | None:
        started = time.perf_counter()
        self.attempted = commit
        _event("reconcile_started", stage=self.stage, revision=commit)
        try:
            revision = self._build(commit)
        except FetchError as exc:
            # The commit may be fine: its records are not readable yet. Next pass.
            self.fetch_error = str(exc)
            _event("fetch_failed", stage=self.stage, revision=commit, error=str(exc))
            return None
        except (GitmlError, OSError) as exc:
            return self._fail(commit, started, str(exc))
        except Exception as exc:  # a model's own code raised while loading
            return self._fail(commit, started, f"{type(exc).__name__}: {exc}")
        self.current = revision  # the swap: one reference assignment
        self.failed = self.failure = None
        seconds = time.perf_counter() - started
        outcome = Outcome(commit, "Synced", seconds, self.clock())
        self._record(outcome)
        served = {
            m: [(v.version, v.weight) for v in r.versions] for m, r in revision.models.items()
        }
        _event(
            "reconcile_synced", stage=self.stage, revision=commit, seconds=seconds, served=served
        )
        return outcome

    def _fail(self, commit: str, started: float, reason: str) -> Outcome:
        self.failed = commit
        self.failure = reason
        outcome = Outcome(commit, "Failed", time.perf_counter() - started, self.clock(), reason)
        self._record(outcome)
        _event("reconcile_failed", stage=self.stage, revision=commit, error=reason)
        return outcome

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.metrics.reconciles[outcome.result] += 1
        self.metrics.reconcile_seconds += outcome.seconds

    def _build(self, commit: str) -> Revision:
        from .stages import declarations, weights_problem

        declared = declarations(self.store, self.stage, commit)
        if not declared and not self.allow_empty:
            raise ReconcileError(
                f"gitml/{self.stage} at {commit[:12]} declares no model; refusing to stop "
                "serving everything (start with --allow-empty to permit it)"
            )
        for name, declaration in declared.items():
            problem = weights_problem(declaration, self.stage, self.config)
            if problem is not None:
                raise ReconcileError(f"models/{name}.yaml: {problem}")
        self.source.fetch_for(declared)
        loaded = {v.key: v for v in served_versions(self.current)}
        routes = {}
        for name, declaration in declared.items():
            versions = []
            for served in declaration.versions:
                record = _version_record(self.store, name, served.version)
                if record.status == "DELETED":
                    raise ReconcileError(f"model '{name}' version {served.version} was deleted")
                reuse = loaded.get((name, record.version, record.digest))
                if reuse is not None:
                    predictor = reuse.predictor
                else:
                    predictor = self.loader(record, self.store.root)
                versions.append(
                    LoadedVersion(
                        model=name,
                        version=record.version,
                        weight=served.weight,
                        digest=record.digest,
                        run_id=record.run_id,
                        predictor=predictor,
                    )
                )
            routes[name] = ModelRoute(versions)
        return Revision(commit, routes, self.clock())

    # -- the loop ------------------------------------------------------------------

    def run(self, interval: float) -> None:
        """Reconcile every ``interval`` seconds, or at once when ``wake()`` is called."""
        while not self._stop.is_set():
            # Cleared before the pass: a wake() during it means "look again".
            self._wake.clear()
            try:
                self.reconcile()
            except Exception as exc:  # the loop must outlive any one pass
                self.fetch_error = f"{type(exc).__name__}: {exc}"
                _event(
                    "reconcile_crashed",
                    stage=self.stage,
                    error=self.fetch_error,
                    traceback=traceback.format_exc(),
                )
            self._wake.wait(interval)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- reading ---------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Ready for traffic (``/health``): serving something, and the tip has been tried.

        A replica that is loading its first revision, or whose first revision
        failed, is not ready. One that serves the last good revision while
        the tip failed (Degraded), or while it loads a newer one, stays
        ready: taking every replica out of a load balancer because of a bad
        commit would turn it into an outage.
        """
        return self.current is not None and self.attempted == self.desired

    def status(self) -> dict[str, Any]:
        current = self.current
        degraded = self.failed is not None or (self.last_error is not None and current is None)
        health = "Degraded" if degraded else ("Healthy" if current is not None else "Progressing")
        models = {}
        if current is not None:
            for name, route in current.models.items():
                models[name] = [
                    {
                        "version": v.version,
                        "weight": v.weight,
                        "digest": v.digest,
                        "run_id": v.run_id,
                        "health": "Healthy" if v.healthy else "Degraded",
                    }
                    for v in route.versions
                ]
        return {
            "stage": self.stage,
            "source": self.source.describe(),
            "pid": os.getpid(),  # which worker answered, with --workers N
            "health": health,
            "sync": "Synced" if current and current.commit == self.desired else "OutOfSync",
            "desired_revision": self.desired,
            "applied_revision": current.commit if current else None,
            "last_attempted_revision": self.attempted,
            "last_error": self.last_error,
            "models": models,
            "history": [
                {
                    "revision": o.revision,
                    "result": o.result,
                    "seconds": round(o.seconds, 6),
                    "at": o.at,
                    "error": o.error,
                }
                for o in reversed(tuple(self.outcomes))  # a copy: the loop thread appends
            ],
        }

    def prometheus(self) -> str:
        m = self.metrics
        lines = [
            "# HELP gitml_requests_total Scoring requests by model, version and HTTP status.",
            "# TYPE gitml_requests_total counter",
        ]
        for (model, version, status), count in sorted(m.requests.items()):
            lines.append(
                f'gitml_requests_total{{model="{_label(model)}",version="{version}",'
                f'status="{status}"}} {count}'
            )
        lines += [
            "# HELP gitml_request_seconds Scoring latency by model and version.",
            "# TYPE gitml_request_seconds histogram",
        ]
        for model, version in sorted(m.latency_sum):
            labels = f'model="{_label(model)}",version="{version}"'
            count = 0
            for bound in BUCKETS:
                le = "+Inf" if bound == float("inf") else repr(bound)
                count += m.latency_buckets[(model, version, bound)]
                lines.append(f'gitml_request_seconds_bucket{{{labels},le="{le}"}} {count}')
            total = sum(c for (mo, v, _), c in m.requests.items() if (mo, v) == (model, version))
            lines.append(f"gitml_request_seconds_sum{{{labels}}} {m.latency_sum[(model, version)]}")
            lines.append(f"gitml_request_seconds_count{{{labels}}} {total}")
        lines += [
            "# HELP gitml_reconcile_total Reconcile passes that tried a revision, by outcome.",
            "# TYPE gitml_reconcile_total counter",
            *(
                f'gitml_reconcile_total{{outcome="{k}"}} {v}'
                for k, v in sorted(m.reconciles.items())
            ),
            "# HELP gitml_reconcile_seconds_total Time spent in those passes.",
            "# TYPE gitml_reconcile_seconds_total counter",
            f"gitml_reconcile_seconds_total {m.reconcile_seconds}",
            "# HELP gitml_revision_info The stage revision served (1) and desired.",
            "# TYPE gitml_revision_info gauge",
        ]
        current = self.current
        if current is not None:
            lines.append(
                f'gitml_revision_info{{stage="{self.stage}",revision="{current.commit}",'
                'role="applied"} 1'
            )
        if self.desired is not None:
            lines.append(
                f'gitml_revision_info{{stage="{self.stage}",revision="{self.desired}",'
                'role="desired"} 1'
            )
        return "\n".join(lines) + "\n"


def load_version(version: ModelVersion, repo: Path) -> Predictor:
    """Load a registered version from ``repo``, verified, and check it on its input example."""
    from .models.pyfunc import load_model
    from .registry import Registry
    from .tracking.client import Client

    client = Client(str(repo))
    try:
        folder = Registry(client).version_path(version)
    finally:
        client.close()
    model = load_model(folder)
    example = model.metadata.load_input_example()
    if example is not None:
        try:
            model.predict(example)
        except Exception as exc:
            raise ReconcileError(
                f"model '{version.name}' version {version.version} failed its health check "
                f"on its input example: {type(exc).__name__}: {exc}"
            ) from exc
    return model


def parse_interval(text: str) -> float:
    """``2s``, ``500ms``, ``1m`` or a plain number of seconds."""
    value = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix):
            value, factor = value[: -len(suffix)], scale
            break
    else:
        factor = 1.0
    try:
        seconds = float(value) * factor
    except ValueError:
        raise InvalidInput(f"interval {text!r}: use a number with s, ms or m (2s, 500ms)") from None
    if not 0.05 <= seconds <= 3600:
        raise InvalidInput(f"interval {text!r}: must be between 50ms and 1h")
    return seconds


def _event(name: str, **fields: Any) -> None:
    """One structured log line per event: a JSON object on one line (``gitml.reconcile``)."""
    record = {"time": round(time.time(), 3), "pid": os.getpid(), "event": name, **fields}
    log.info(orjson.dumps(record, default=str).decode())


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def served_versions(revision: Revision | None) -> Iterator[LoadedVersion]:
    if revision is not None:
        for route in revision.models.values():
            yield from route.versions

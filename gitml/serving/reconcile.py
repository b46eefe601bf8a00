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
being able to *read* the remote (``FetchError``: network, a remote that
stops answering) says nothing about the commit, so it is retried on the next
pass, and ``status()`` says the sync is Unknown and the served state stale.
A remote that answers but lacks what the commit declares (a model never
registered, a ref deleted) is a failed revision (``MissingOnRemote``),
looked at again on each pass in case the rest of a push arrives.

The reconciler keeps no state beyond a cache (the followed repository, the
loaded models and the last revision applied), so any number of replicas
following the same branch converge on the same revision. Whether a version
can be served is decided from the repository's content alone (the version's
digest against its run's manifest, every file against its sha256), so every
replica decides the same way. A replica restarted while the remote is down
serves the last revision it applied, from its cache, until the remote returns.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import itertools
import logging
import math
import os
import re
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

from gitml.errors import GitmlError, InvalidInput, NotFound
from gitml.format.layout import MODELS as MODELS_REF
from gitml.format.layout import RECONCILE_SCRATCH as SCRATCH
from gitml.format.layout import RUNS as RUNS_REF
from gitml.format.layout import stage_branch
from gitml.format.readers import read_version
from gitml.format.records import Config, ModelVersion, StageDeclaration
from gitml.git import command
from gitml.git.command import GitFailed
from gitml.git.store import Store
from gitml.serving.scoring import Predictor

log = logging.getLogger("gitml.serving.reconcile")

HISTORY = 20
# Latency histogram bounds in seconds, as Prometheus clients default to, plus 1 ms.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf"))


class ReconcileError(GitmlError):
    """Why a revision cannot be served; the last good revision keeps serving."""


class FetchError(ReconcileError):
    """The remote could not be read (network, a stall): retried on the next pass.

    Unlike a ``ReconcileError`` about the revision itself, this says nothing
    about the commit, so it does not mark the commit failed.
    """


class FetchTimeout(FetchError):
    """A git call to the remote got no answer before its deadline and was killed."""


class MissingOnRemote(ReconcileError):
    """The remote answered, without a ref the revision needs: the revision cannot be served.

    The commit is Failed, but looked at again on the next passes: the rest of a
    push (git updates the refs of one push one at a time) may still arrive.
    """


# ``scheme://user:password@host``: what a URL may carry that must never be shown.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


@dataclass(frozen=True)
class LoadedVersion:
    """One version of a model, loaded and health-checked."""

    model: str
    version: int
    weight: int
    digest: str
    run_id: str
    predictor: Predictor
    run_commit: str = ""  # the run's commit whose files were verified and loaded
    healthy: bool = True

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.model, self.version, self.digest, self.run_commit)


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
    fetch_failures: collections.Counter[str] = field(default_factory=collections.Counter)

    def observe(self, model: str, version: int, status: int, seconds: float) -> None:
        self.requests[(model, version, status)] += 1
        self.latency_sum[(model, version)] += seconds
        # One counter per request (the smallest bucket that holds it); /metrics
        # adds them up into Prometheus's cumulative buckets when it is read.
        self.latency_buckets[(model, version, BUCKETS[bisect.bisect_left(BUCKETS, seconds)])] += 1


Loader = Callable[[ModelVersion, Path], Predictor]


class Source:
    """Where the followed stage branch and its records come from: the local repository."""

    fetch_timeout: float | None = None  # a local repository is read without a network

    def __init__(self, store: Store) -> None:
        self.store = store
        # Set when the reconciler stops: a git call in flight is killed at once.
        self.cancelled = threading.Event()

    def refresh(self, stage: str) -> None:
        """Bring in the latest stage branch (a local repository is always current)."""

    def fetch_for(self, declared: dict[str, StageDeclaration]) -> None:
        """Bring in what the declarations need (a local repository has it)."""

    def describe(self) -> str:
        return str(self.store.root)

    def busy_for(self) -> float:
        """Seconds the git call to the remote in flight has run (0: none)."""
        return 0.0

    def restart(self) -> bool:
        """Kill the git call in flight, if any, so that the next pass starts afresh."""
        return False

    def remember(self, stage: str, commit: str) -> None:
        """Note ``commit`` as the revision applied (a local repository needs no note)."""

    def reached(self, stage: str) -> None:
        """Note that the source was read just now."""

    def remembered(self, stage: str) -> tuple[str, float | None] | None:
        """The revision last applied, and when the source was last read, from an earlier run."""
        return None


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

    Every git call runs in its own process group under ``fetch_timeout``: a
    remote that accepts the connection and never answers would otherwise hold
    git (and its ``git-remote-http`` child) for as long as TCP lets it, and
    killing git alone leaves the child holding the pipes.
    """

    ATTEMPTS = 5

    def __init__(self, url: str, cache: Path, *, fetch_timeout: float = 10.0) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        super().__init__(Store(cache) if (cache / "HEAD").exists() else _new_cache(cache))
        # git runs in the cache: a relative path to a local remote must not mean a path in it.
        self.url = str(Path(url).resolve()) if Path(url).exists() else url
        self.shown = redact(self.url)
        self.fetch_timeout = self._deadline = fetch_timeout
        # Every git call here is killed at fetch_timeout, so a lock this old in the
        # cache belongs to a process that died holding it (kill -9, a lost node).
        self.stale_lock_seconds = 2 * fetch_timeout
        self._restart = threading.Event()
        self._busy_since: float | None = None
        self._drop_orphaned_scratch()

    def refresh(self, stage: str) -> None:
        self._mirror([stage_branch(stage)], FetchError)

    def fetch_for(self, declared: dict[str, StageDeclaration]) -> None:
        self._mirror([f"{MODELS_REF}{name}" for name in sorted(declared)], MissingOnRemote)
        runs = set()
        for name, declaration in declared.items():
            for served in declaration.versions:
                version = _version_record(self.store, name, served.version)
                runs.add(version.run_id)
        self._mirror([f"{RUNS_REF}{r}" for r in sorted(runs)], MissingOnRemote)

    def busy_for(self) -> float:
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def restart(self) -> bool:
        if self._busy_since is None:
            return False
        self._restart.set()
        return True

    def _state_file(self, stage: str) -> Path:
        return self.store.root / "gitml-reconcile" / f"{stage}.json"

    def remember(self, stage: str, commit: str) -> None:
        path = self._state_file(stage)
        path.parent.mkdir(exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}")
        scratch.write_bytes(orjson.dumps({"revision": commit}))
        os.replace(scratch, path)  # whole, whatever another worker writes at the same time

    def reached(self, stage: str) -> None:
        # The note's modification time is when the remote was last read: one
        # utime a pass rather than a rewrite.
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._state_file(stage))

    def remembered(self, stage: str) -> tuple[str, float | None] | None:
        path = self._state_file(stage)
        try:
            note = orjson.loads(path.read_bytes())
            reached = path.stat().st_mtime
        except (OSError, orjson.JSONDecodeError):
            return None
        commit = note.get("revision") if isinstance(note, dict) else None
        if not isinstance(commit, str) or not self.store.has_object(commit):
            return None
        return commit, reached

    def _git(self, *args: str, stdin: str | None = None, remote: bool = False) -> str:
        done = self._run(list(args), stdin, remote)
        if done.returncode != 0:
            raise FetchError(f"git {args[0]} failed: {_said(done)}")
        return done.stdout

    def _run(
        self, args: list[str], stdin: str | None, remote: bool
    ) -> subprocess.CompletedProcess[str]:
        """Run git in the cache, breaking a stale lock of the cache once if git met one."""
        done = self._call(args, stdin, remote)
        lock = _LOCKED.search(done.stderr) if done.returncode != 0 else None
        if lock is not None and self._break_stale_lock(Path(lock.group("path"))):
            done = self._call(args, stdin, remote)
        return done

    def _call(
        self, args: list[str], stdin: str | None, remote: bool
    ) -> subprocess.CompletedProcess[str]:
        """One git call, killed with every process it started at the deadline or on stop."""
        if remote:
            self._restart.clear()
            self._busy_since = time.monotonic()

        def stop(waited: float) -> FetchTimeout | None:
            if self.cancelled.is_set():
                why = "stopped: the reconciler is shutting down"
            elif remote and self._restart.is_set():
                why = f"restarted after {waited:.1f} s without an answer (a webhook came in)"
            elif waited >= self._deadline:
                why = f"no answer in {self._deadline:g} s (--fetch-timeout); killed it"
            else:
                return None
            return FetchTimeout(f"git {args[0]} {self.shown}: {why}")

        try:
            return command.run_watched(args, cwd=self.store.root, stdin=stdin, stop=stop)
        finally:
            if remote:
                self._busy_since = None

    def _break_stale_lock(self, lock: Path) -> bool:
        """Remove ``lock`` if it is in the cache and older than any live git call holds one."""
        try:
            lock.resolve().relative_to(self.store.root.resolve())
            age = time.time() - lock.stat().st_mtime
        except (OSError, ValueError):
            return False
        if age < self.stale_lock_seconds:
            return False
        with contextlib.suppress(FileNotFoundError):  # another process broke it first
            lock.unlink()
        _event("stale_lock_removed", lock=str(lock), age_seconds=round(age, 1))
        return True

    def _mirror(self, refs: list[str], missing_is: type[ReconcileError]) -> None:
        """Set ``refs`` in the cache to the remote's values, by compare-and-swap."""
        if not refs:
            return
        # The common case, nothing moved, costs one ls-remote and writes nothing.
        listed = self._remote_values(refs)
        missing = [ref for ref in refs if ref not in listed]
        if missing:
            raise missing_is(f"{self.shown} has no {missing[0]}")
        if all(listed[ref] == self.store.tip(ref) for ref in refs):
            return
        refused = ""
        for _ in range(self.ATTEMPTS):
            before = {ref: self.store.tip(ref) for ref in refs}
            scratch = f"{SCRATCH}{os.getpid()}-{uuid.uuid4().hex}/"
            try:
                self._git(
                    "fetch", "-q", "--no-tags", "--no-write-fetch-head", self.url,
                    *[f"+{ref}:{scratch}{ref}" for ref in refs], remote=True,
                )  # fmt: skip
                fetched = self._ref_values(scratch)
                commands = [
                    f"update {ref} {fetched[scratch + ref]} {before[ref] or ZERO}\n"
                    for ref in refs
                    if fetched[scratch + ref] != before[ref]
                ]
                if not commands:
                    return
                done = self._run(["update-ref", "--stdin"], "".join(commands), False)
                if done.returncode == 0:
                    return
                refused = _said(done)
            finally:
                self._delete_refs(scratch)
        raise FetchError(
            f"{self.shown}: the cache's refs could not be updated in {self.ATTEMPTS} "
            f"attempts; git said: {refused}"
        )

    def _remote_values(self, refs: list[str]) -> dict[str, str]:
        """What ``refs`` point to on the remote (a ref it lacks is left out)."""
        out = self._git("ls-remote", self.url, *refs, remote=True)
        wanted = set(refs)
        pairs = (line.split("\t", 1) for line in out.splitlines() if line)
        return {name: sha for sha, name in pairs if name in wanted}

    def _ref_values(self, prefix: str) -> dict[str, str]:
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def _delete_refs(self, prefix: str) -> None:
        """Drop a scratch namespace (its objects stay: the real refs reach them)."""
        names = self._ref_values(prefix)
        if names:
            self._run(["update-ref", "--stdin"], "".join(f"delete {n}\n" for n in names), False)

    def _drop_orphaned_scratch(self) -> None:
        """Scratch refs of processes that died mid-fetch (killed): nobody else removes them."""
        orphans = {}
        for name, sha in self._ref_values(SCRATCH).items():
            pid = name[len(SCRATCH) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                orphans[name] = sha
        if orphans:
            commands = "".join(f"delete {n}\n" for n in orphans)
            self._run(["update-ref", "--stdin"], commands, False)

    def describe(self) -> str:
        return self.shown


ZERO = "0" * 40
# git's words for a lock file another process holds (or left behind).
_LOCKED = re.compile(r"Unable to create '(?P<path>[^']+\.lock)': File exists")


def _new_cache(cache: Path) -> Store:
    try:
        command.run(["init", "-q", "--bare"], cwd=cache)
    except GitFailed as exc:
        raise ReconcileError(f"cannot make a cache in {cache}: {exc}") from None
    return Store(cache)


def _said(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed git call said, without any credentials a URL in it carries."""
    return redact(command.said(done.stderr, done.stdout, done.returncode))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _version_record(store: Store, name: str, number: int) -> ModelVersion:
    if store.tip(MODELS_REF + name) is None:
        raise ReconcileError(f"model '{name}' is not registered")
    try:
        return read_version(store, name, number)
    except NotFound as exc:
        raise ReconcileError(str(exc)) from None


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
        stall_after: float = 1.0,
    ) -> None:
        from gitml.registry.stages import check_stage

        self.source = source
        self.store = source.store
        self.stage = check_stage(stage)
        self.config = config
        self.allow_empty = allow_empty
        self.loader = loader or load_version
        self.clock = clock
        # A git call to the remote running longer than this is reported as a stall.
        self.stall_after = stall_after
        self.metrics = Metrics()
        self.current: Revision | None = None
        self.desired: str | None = None
        self.attempted: str | None = None
        self.failed: str | None = None  # the commit that failed, not retried until the tip moves
        self.failure: str | None = None  # why it failed
        self.retry_failed = False  # the failure was a ref missing on the remote: look again
        self.fetch_error: str | None = None  # the last pass could not read the source
        self.last_read: float | None = None  # when the source was last read (clock time)
        self.from_cache = False  # serving what the cache held when the remote was down
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
                self._unreachable(exc)
                if self.current is None:
                    return self._start_from_cache()
                return None
            tip = self.store.tip(stage_branch(self.stage))
            self.fetch_error = None if tip else f"branch gitml/{self.stage} does not exist"
            self.last_read = self.clock()
            self.source.reached(self.stage)
            self.desired = tip
            if tip is None:
                return None  # whatever is served keeps serving
            if self.current is not None and self.current.commit == tip:
                # Back on the served commit (a bad commit reverted by a reset): synced.
                self.attempted, self.failed, self.failure = tip, None, None
                self.from_cache = False
                return None
            if tip == self.failed and not self.retry_failed:
                return None  # Argo CD's rule: a failed commit waits for the branch to move
            return self._apply(tip)

    def _unreachable(self, exc: FetchError, **fields: Any) -> None:
        self.fetch_error = str(exc)
        self.metrics.fetch_failures["timeout" if isinstance(exc, FetchTimeout) else "error"] += 1
        _event("fetch_failed", stage=self.stage, error=str(exc), **fields)

    def _start_from_cache(self) -> Outcome | None:
        """Serve the revision applied before a restart, while the remote cannot be read."""
        remembered = self.source.remembered(self.stage)
        if remembered is None or remembered[0] == self.failed:
            return None
        commit, last_read = remembered
        self.last_read = last_read
        outcome = self._apply(commit, fetch=False)
        self.from_cache = self.current is not None
        return outcome

    def _apply(self, commit: str, *, fetch: bool = True) -> Outcome | None:
        started = time.perf_counter()
        self.attempted = commit
        _event("reconcile_started", stage=self.stage, revision=commit, from_cache=not fetch)
        try:
            revision = self._build(commit, fetch=fetch)
        except FetchError as exc:
            # The commit may be fine: its records are not readable yet. Next pass.
            self._unreachable(exc, revision=commit)
            return None
        except MissingOnRemote as exc:
            return self._fail(commit, started, str(exc), retry=True)
        except (GitmlError, OSError) as exc:
            return self._fail(commit, started, str(exc))
        except Exception as exc:  # a model's own code raised while loading
            return self._fail(commit, started, f"{type(exc).__name__}: {exc}")
        self.current = revision  # the swap: one reference assignment
        self.failed = self.failure = None
        self.retry_failed = False
        self.from_cache = False
        if fetch:
            self.source.remember(self.stage, commit)
        seconds = time.perf_counter() - started
        outcome = Outcome(commit, "Synced", seconds, self.clock())
        self._record(outcome)
        served = {
            m: [(v.version, v.weight) for v in r.versions] for m, r in revision.models.items()
        }
        _event(
            "reconcile_synced",
            stage=self.stage,
            revision=commit,
            seconds=seconds,
            served=served,
            from_cache=not fetch,
        )
        return outcome

    def _fail(
        self, commit: str, started: float, reason: str, *, retry: bool = False
    ) -> Outcome | None:
        again = commit == self.failed and reason == self.failure
        self.failed = commit
        self.failure = reason
        self.retry_failed = retry
        if again:
            return None  # looked at again and still missing: one outcome, not one a pass
        outcome = Outcome(commit, "Failed", time.perf_counter() - started, self.clock(), reason)
        self._record(outcome)
        _event("reconcile_failed", stage=self.stage, revision=commit, error=reason)
        return outcome

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.metrics.reconciles[outcome.result] += 1
        self.metrics.reconcile_seconds += outcome.seconds

    def _build(self, commit: str, *, fetch: bool = True) -> Revision:
        from gitml.registry.declarations import declarations, other_version, weights_problem

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
        if fetch:
            self.source.fetch_for(declared)
        loaded = {v.key: v for v in served_versions(self.current)}
        routes = {}
        for name, declaration in declared.items():
            versions = []
            for served in declaration.versions:
                record = _version_record(self.store, name, served.version)
                if record.status == "DELETED":
                    raise ReconcileError(f"model '{name}' version {served.version} was deleted")
                wrong = other_version(self.stage, name, served, record)
                if wrong is not None:
                    raise ReconcileError(wrong)
                # The run's commit names its files by content: while it is the same,
                # so are they, and a loaded model is still what the version declares.
                run_commit = self.store.tip(RUNS_REF + record.run_id) or ""
                reuse = loaded.get((name, record.version, record.digest, run_commit))
                if reuse is not None:
                    predictor = reuse.predictor
                else:
                    verify_files(record, self.store.root)
                    predictor = self.loader(record, self.store.root)
                versions.append(
                    LoadedVersion(
                        model=name,
                        version=record.version,
                        weight=served.weight,
                        digest=record.digest,
                        run_id=record.run_id,
                        predictor=predictor,
                        run_commit=run_commit,
                    )
                )
            routes[name] = ModelRoute(versions)
        return Revision(commit, routes, self.clock())

    # -- the loop ------------------------------------------------------------------

    def run(self, interval: float) -> None:
        """Reconcile every ``interval`` seconds, or at once when ``wake()`` is called.

        A restarted replica first serves what it applied before, from its cache,
        so it answers without waiting on the remote (which may be down).
        """
        with self._lock:
            try:
                self._start_from_cache()
            except Exception as exc:  # the loop must start whatever the cache holds
                self.fetch_error = f"{type(exc).__name__}: {exc}"
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

    def wake(self) -> bool:
        """Look again at once; a git call stalled past ``stall_after`` is killed and
        started afresh (a push webhook says the remote is up). True if one was."""
        restarted = self.source.busy_for() > self.stall_after and self.source.restart()
        self._wake.set()
        return restarted

    def stop(self) -> None:
        self._stop.set()
        self.source.cancelled.set()
        self._wake.set()

    # -- reading ---------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Ready for traffic (``/health``): serving something, and the tip has been tried.

        A replica that is loading its first revision, or whose first revision
        failed, is not ready. One that serves the last good revision while
        the tip failed (Degraded), or while it loads a newer one, stays
        ready: taking every replica out of a load balancer because of a bad
        commit would turn it into an outage. So does one that serves its
        cache's last revision because the remote has not been read since a
        restart: the remote being down must not become an outage either.
        """
        return self.current is not None and (self.attempted == self.desired or self.from_cache)

    def stalled(self) -> str | None:
        """Why the git call in flight counts as a stall, or None."""
        busy = self.source.busy_for()
        if busy <= self.stall_after:
            return None
        timeout = self.source.fetch_timeout
        limit = f"; killed at {timeout:g} s" if timeout else ""
        return f"{self.source.describe()}: no answer for {busy:.1f} s{limit}"

    def _unknown(self, stall: str | None = None) -> bool:
        """The remote's tip is not known now: it could not be read, or is not answering."""
        stall = stall or self.stalled()
        return self.fetch_error is not None or stall is not None or self.desired is None

    def status(self) -> dict[str, Any]:
        current = self.current
        stall = self.stalled()
        unreachable = self._unknown(stall)
        degraded = self.failed is not None or (self.last_error is not None and current is None)
        health = "Degraded" if degraded else ("Healthy" if current is not None else "Progressing")
        if unreachable:
            sync = "Unknown"  # the remote's tip is not known now: neither Synced nor not
        else:
            sync = "Synced" if current and current.commit == self.desired else "OutOfSync"
        stale = None
        if unreachable and current is not None:
            read = self.last_read
            stale = {
                "last_read": read,
                "age_seconds": None if read is None else round(self.clock() - read, 1),
                "from_cache": self.from_cache,
            }
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
            "sync": sync,
            "stale": stale,
            "desired_revision": self.desired,
            "applied_revision": current.commit if current else None,
            "last_attempted_revision": self.attempted,
            "last_error": self.fetch_error or stall or self.failure,
            "fetch_failures": sum(self.metrics.fetch_failures.values()),
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
            "# HELP gitml_fetch_failures_total Passes that could not read the source, by reason.",
            "# TYPE gitml_fetch_failures_total counter",
            *(
                f'gitml_fetch_failures_total{{reason="{k}"}} {m.fetch_failures[k]}'
                for k in ("error", "timeout")
            ),
            "# HELP gitml_fetch_in_flight_seconds How long the git call to the remote in flight "
            "has run (0: none).",
            "# TYPE gitml_fetch_in_flight_seconds gauge",
            f"gitml_fetch_in_flight_seconds {round(self.source.busy_for(), 3)}",
            "# HELP gitml_source_stale 1 while the source cannot be read (the tip is unknown).",
            "# TYPE gitml_source_stale gauge",
            f"gitml_source_stale {int(self._unknown())}",
            "# HELP gitml_source_last_read_timestamp_seconds When the source was last read.",
            "# TYPE gitml_source_last_read_timestamp_seconds gauge",
            *(
                [f"gitml_source_last_read_timestamp_seconds {self.last_read}"]
                if self.last_read is not None
                else []
            ),
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


def verify_files(version: ModelVersion, repo: Path) -> None:
    """``Corrupt`` unless the repository holds exactly the files ``version`` recorded.

    The run's manifest must give the version's digest, and each of the model's
    files in the run's tree must have the sha256 the manifest lists: read from
    the repository (the remote's content), never from files loaded before.
    """
    from gitml.registry.versions import Registry
    from gitml.tracking.client import Client
    from gitml.tracking.git_backend import read_manifest

    client = Client(str(repo))
    try:
        Registry(client).check_digest(version)
        runs = client.git
        snap = runs.store.snapshot(runs.run_tip(version.run_id))
        prefix = version.model_path + "/"
        for artifact in read_manifest(snap):
            if artifact.path.startswith(prefix) and artifact.storage != "external":
                runs.artifact_bytes(version.run_id, snap, artifact)
    finally:
        client.close()


def load_version(version: ModelVersion, repo: Path) -> Predictor:
    """Load a registered version from ``repo``, verified, and check it on its input example."""
    from gitml.models.pyfunc import load_model
    from gitml.models.uri import version_folder
    from gitml.registry.versions import Registry
    from gitml.tracking.client import Client

    client = Client(str(repo))
    try:
        folder = version_folder(Registry(client), version)
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
    """One structured log line per event, a JSON object (logger ``gitml.serving.reconcile``)."""
    record = {"time": round(time.time(), 3), "pid": os.getpid(), "event": name, **fields}
    # Whatever a field holds (a traceback, a model's error), no URL's credentials.
    log.info(redact(orjson.dumps(record, default=str).decode()))


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def served_versions(revision: Revision | None) -> Iterator[LoadedVersion]:
    if revision is not None:
        for route in revision.models.values():
            yield from route.versions

"""Sharing records with a Git remote: ``gitml remote setup``, ``gitml push``, ``gitml pull``.

Network work is done by the real ``git`` (every transport, ``--atomic``,
``--atomic``; dulwich's push rejects glob refspecs and its fetch never creates
custom refs). Local refs move only by compare-and-swap, logged for the
query index: ``Store.set_ref``, or a pull's ``git update-ref`` transactions
through ``Store.moved_together``.

Decisions:

- **Refspecs.** ``remote setup`` adds ``refs/gitml/*:refs/gitml/*`` as a fetch
  *and* a push refspec, and ``refs/heads/gitml/*:refs/heads/gitml/*`` as a push
  refspec; stage branches are fetched to ``refs/remotes/<remote>/gitml/*``
  (skipped when the remote's ``refs/heads/*`` refspec already covers them, as
  in a clone). Running it twice adds nothing. The fetch refspec has no ``+``
  (unlike git's default one): a forced fetch would silently replace a local model
  ref that registered versions offline, losing them; without it plain
  ``git fetch`` reports that ref as rejected and ``gitml push`` renumbers.
  Once ``remote.<r>.push`` is set, a bare ``git push`` pushes those refspecs
  only; push code branches by name (``git push origin main``).
- **Pull** lists the remote's ``refs/gitml/*`` and ``refs/heads/gitml/*``
  and compares them with the local refs; when nothing differs it stops there.
  Otherwise it fetches the objects of the tips that differ (by commit, so
  no ref moves yet), validates each record that would move a local ref
  (schemas, and that names in the files match the ref), then moves local
  refs by compare-and-swap, fast-forward only: experiments, then runs in
  batches (checked by worker processes ahead of the batch moving), then
  models and stage branches. A
  malformed record is reported and not applied; a diverged ref is reported
  and left alone. What is validated is the record at the fetched tip (every
  file of it), not each commit on the way. Local stage branches are
  fast-forwarded too (they are what the reconciler follows), except the
  branch checked out in the work tree; proposal branches are not copied
  (they are reviewed on the remote). Deletions on the remote are not
  propagated.
- **Push** is all or nothing: it lists the remote's refs, fetches the objects
  of those that differ, and classifies each local ref. A
  diverged run ref (both sides committed), a stage branch that is not a
  fast-forward (stage changes are reviewed; never forced), or a run or model
  version whose external artifacts the artifact store lacks refuses the whole
  push, with one message per problem, and nothing moves anywhere. A ref the
  remote is ahead of is left out (``gitml pull`` brings it).
- **Experiments** are named, not numbered: two machines that created the same
  experiment (same id and name; only the creation time differs) hold
  diverged refs for one experiment. Push and pull adopt the remote's commit
  locally; runs refer to experiments by id, so nothing is lost. Any other
  divergence of an experiment is a conflict.
- **Model versions.** A diverged model ref means both sides registered
  versions. Push renumbers the local ones on top of the remote's tip, and the
  unpushed stage and proposal commits that declare them (``renumber.py``);
  then the local refs move (CAS) and the push is retried; each renumbering is
  reported ("churn: your version 5 is now version 6").
- **Atomic, compare-and-swap.** One ``git push --atomic`` carries every ref,
  through glob refspecs: from the records' own refs when the plan is every
  local difference, else from ``refs/gitml-outgoing/<remote>/`` (the planned
  tips, removed after the push). Every ref pushed is a fast-forward of the
  remote tip it was classified against, never forced, so git's own
  fast-forward check is the compare-and-swap: a concurrent pusher makes it
  fail, nothing of ours lands, and the whole classification runs again
  (``PUSH_ATTEMPTS`` times).
- **External artifacts**. ``artifact_store_holds`` opens the
  store of ``.gitml.yaml`` (a folder, or a bucket: ``gitml.artifacts``)
  with this machine's cache, ``.git/gitml/artifacts``. Push asks the store
  in one batch which of the digests the pushed records name it lacks,
  uploads those the cache holds (before any ref moves: the remote never names
  an object the store lacks), and refuses the push, naming each artifact,
  when one is in neither. Pull downloads into the cache the artifacts of the
  records it applied that the cache lacks (for a bucket; a folder store is
  read in place); one that cannot be had is a problem, the ref stays applied.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gitml.errors import Conflict, InvalidInput, InvalidRecord, NotFound
from gitml.format import layout, schemas, yamlio
from gitml.format.layout import (
    EXPERIMENT_FILE,
    EXPERIMENTS,
    GITML,
    MANIFEST_FILE,
    MODEL_FILE,
    MODELS,
    OUTGOING,
    PROPOSALS,
    RUN_FILE,
    RUNS,
    STAGES,
    VERSIONS_DIR,
    declaration_path,
    version_number,
)
from gitml.git import command
from gitml.git.command import GitFailed
from gitml.git.store import Store
from gitml.registry.declarations import declared
from gitml.sharing.renumber import Renumbering, rebase_model, renumber_stages

# The record models (pydantic) and the artifact stores are imported where they are
# used: importing them is most of what a pull that brings nothing costs.
if TYPE_CHECKING:
    from concurrent.futures import Future
    from multiprocessing.pool import AsyncResult

    from gitml.artifacts import SharedStore
    from gitml.format.records import Artifact, ArtifactManifest, ModelVersion, Record
    from gitml.query.index import ReadRun

PUSH_ATTEMPTS = 6

Holds = Callable[[str], bool]

# -- git ------------------------------------------------------------------------


def _git(
    store: Store, *args: str, stdin: str | None = None, ok: Iterable[int] = (0,)
) -> subprocess.CompletedProcess[str]:
    return command.run(args, cwd=store.root, stdin=stdin, ok=ok)


def _cat_files(root: Path, names: list[str], *, parallel: bool = False) -> list[bytes | None]:
    """The content of each blob ``names`` name (``<rev>:<path>``) in the repository at
    ``root``, None for anything else, read by one ``git cat-file --batch`` (dulwich
    reads a packed object in Python).

    ``parallel``: from ``PARALLEL_FROM`` names, one ``git cat-file`` per core, each
    reading its share. Reading loose objects is mostly system time spent opening
    files (10,000 runs' manifests: 1.5 s in one process, 0.8 s in two).
    """
    if not names:
        return []
    parts = _cores(len(names)) if parallel else 1
    if parts > 1:
        from concurrent.futures import ThreadPoolExecutor

        size = -(-len(names) // parts)
        with ThreadPoolExecutor(parts) as pool:
            shares = pool.map(
                lambda at: _cat_files(root, names[at : at + size]), range(0, len(names), size)
            )
            return [blob for share in shares for blob in share]
    listing = "".join(f"{name}\n" for name in names).encode()
    # --buffer: git flushes after each object otherwise, and each flush cost a poll
    # and a read here (10,000 runs' records: 20,000 of each).
    out, pos = command.run_binary(["cat-file", "--batch", "--buffer"], cwd=root, stdin=listing), 0
    blobs: list[bytes | None] = []
    for _ in names:
        end = out.index(b"\n", pos)
        header = out[pos:end].split(b" ")
        pos = end + 1
        if len(header) != 3:  # "<name> missing" or "<name> ambiguous"
            blobs.append(None)
            continue
        size = int(header[2])
        blobs.append(out[pos : pos + size] if header[1] == b"blob" else None)
        pos += size + 1
    return blobs


def _check_remote(store: Store, remote: str) -> None:
    if _git(store, "remote", "get-url", remote, ok=(0, 2, 128)).returncode != 0:
        raise InvalidInput(
            f"no remote '{remote}' in {store.root}: add it with 'git remote add {remote} URL'"
        )


def _is_ancestor(store: Store, older: str, newer: str) -> bool:
    known = store.reaches(newer, older)
    if known is not None:
        return known
    return _git(store, "merge-base", "--is-ancestor", older, newer, ok=(0, 1)).returncode == 0


def _begin_ls_remote(store: Store, remote: str) -> command.Started:
    """``git ls-remote`` started, for ``_listed``: the local refs are listed meanwhile
    (10,000 runs: 18 ms of a push or pull with nothing new, 0.15-0.2 s in all)."""
    return command.begin(("ls-remote", "--refs", remote), cwd=store.root, capture=True)


def _listed(store: Store, remote: str, listing: command.Started) -> dict[str, str]:
    """The remote's refs that are gitml's, once ``listing`` (``_begin_ls_remote``) ends."""
    try:
        text = listing.wait()
    except GitFailed:
        # Asked only now: ``git remote get-url`` first cost every push and pull 3 ms.
        _check_remote(store, remote)
        raise
    out: dict[str, str] = {}
    for line in text.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith((GITML, STAGES)):
            out[ref] = sha
    return out


def _both_sides(store: Store, remote: str) -> tuple[dict[str, str], dict[str, str]]:
    """The remote's refs and the local ones, listed at once."""
    with _begin_ls_remote(store, remote) as listing:
        local = _local_refs(store)
        return _listed(store, remote, listing), local


def _refs_under(store: Store, *prefixes: str) -> dict[str, str]:
    """Ref to sha under ``prefixes``, listed by git: dulwich reads 10,000 refs in seconds."""
    listed = _git(store, "for-each-ref", "--format=%(objectname) %(refname)", *prefixes).stdout
    return {ref: sha for sha, _, ref in (line.partition(" ") for line in listed.splitlines())}


def _local_refs(store: Store) -> dict[str, str]:
    return _refs_under(store, GITML, STAGES)


# ``--refmap=``: with refspecs on the command line git still moves the refs the
# configured ``remote.<r>.fetch`` maps them to ("opportunistic" updates), which
# would put unvalidated records on refs/gitml/* after ``remote setup``.
_FETCH = ("--refmap=", "--no-tags", "--no-write-fetch-head")


def _fetch_objects(
    store: Store, remote: str, commits: Iterable[str], early: command.Started | None = None
) -> set[str]:
    """Fetch the objects of ``commits`` (tips ``_listed`` gave) and write no ref;
    ``early``: ``_begin_fetch``, started before the listing. Returns those of
    ``commits`` that are not commits (a tree, a tag): their records are refused.

    Only commits missing here are fetched (a clone from a path on the same
    disk already holds every object). Naming commits rather than refs keeps
    git from writing a staging ref file for each tip, besides the records'
    own refs moved after validation. But git's cost of a fetch naming commits
    grows faster than their count (100,000 named: 19 s of CPU, three times a
    fetch by refspec), so from ``GLOB_FETCH_FROM`` missing commits gitml's
    refspecs are fetched with ``--dry-run``, which downloads the objects and
    moves no ref (7.6 s); a commit it left out (the remote moved on) is
    then fetched by name. A first pull starts that fetch before it lists
    the remote's refs (``early``), whatever it then finds missing.
    """
    if early is not None:
        early.wait()
    wanted = sorted(set(commits))
    kinds = _kinds(store.root, wanted)
    missing = [c for c in wanted if c not in kinds]
    if early is None and len(missing) >= GLOB_FETCH_FROM:
        _git(store, *_glob_fetch(remote))
        kinds.update(_kinds(store.root, missing))
        missing = [c for c in missing if c not in kinds]
    if missing:
        _git(store, "fetch", *_FETCH, "--stdin", remote, stdin="".join(f"{c}\n" for c in missing))
        kinds.update(_kinds(store.root, missing))
    return {c for c in wanted if kinds.get(c) != "commit"}


GLOB_FETCH_FROM = 1_000


def _glob_fetch(remote: str) -> tuple[str, ...]:
    """The arguments of a ``git fetch`` of all of gitml's refs that moves none."""
    # Forced, and stage branches not onto refs/heads: a dry run only reports
    # what it would refuse (a diverged model, the checked-out branch), and
    # such a report is a failure exit.
    specs = (f"+{GITML}*:{GITML}*", f"+{STAGES}*:refs/remotes/{remote}/{STAGES}*")
    return ("fetch", *_FETCH, "--dry-run", "--quiet", remote, *specs)


def _begin_fetch(store: Store, remote: str) -> command.Started:
    """``_glob_fetch`` started, to run while the caller lists the remote's refs."""
    return command.begin(_glob_fetch(remote), cwd=store.root)


def _kinds(root: Path, shas: list[str]) -> dict[str, str]:
    """The type of each object of ``shas`` this repository holds ("commit", "tree"...),
    asked in one ``git cat-file``; those it lacks are left out."""
    if not shas:
        return {}
    listing = "".join(f"{sha}\n" for sha in shas)
    out = command.run(
        ["cat-file", "--batch-check=%(objectname) %(objecttype)", "--buffer"],
        cwd=root,
        stdin=listing,
    )
    kinds: dict[str, str] = {}
    for sha, line in zip(shas, out.stdout.splitlines(), strict=True):
        name, _, kind = line.partition(" ")
        if name == sha and kind != "missing":
            kinds[sha] = kind
    return kinds


# -- remote setup -----------------------------------------------------------------


def setup_remote(store: Store, remote: str = "origin") -> list[str]:
    """Add gitml's refspecs to ``remote``; returns the ``key = value`` lines added."""
    _check_remote(store, remote)
    wanted = [
        ("fetch", f"{GITML}*:{GITML}*"),
        ("fetch", f"+{STAGES}*:{layout.remote_stages(remote)}*"),
        ("push", f"{GITML}*:{GITML}*"),
        ("push", f"{STAGES}*:{STAGES}*"),
    ]
    added = []
    for kind, spec in wanted:
        key = f"remote.{remote}.{kind}"
        # With or without "+": a refspec the user forced stays as they set it.
        listed = _git(store, "config", "--get-all", key, ok=(0, 1)).stdout.split()
        have = {h.lstrip("+") for h in listed}
        # A clone's default refspec already fetches the stage branches.
        covered = spec.startswith("+" + STAGES) and f"refs/heads/*:refs/remotes/{remote}/*" in have
        if covered or spec.lstrip("+") in have:
            continue
        _git(store, "config", "--add", key, spec)
        added.append(f"{key} = {spec}")
    return added


# -- validation of foreign records ------------------------------------------------


def _kind(ref: str) -> str | None:
    for prefix, kind in (
        (RUNS, "run"),
        (EXPERIMENTS, "experiment"),
        (MODELS, "model"),
        (STAGES, "stage"),
    ):
        if ref.startswith(prefix):
            return kind
    return None


def check_record(store: Store, ref: str, commit: str) -> list[InvalidRecord]:
    """Every way the record ``commit`` holds for ``ref`` breaks gitml's rules.

    The schemas (``schemas.check_bytes``, what ``gitml validate`` uses) and
    the names the files repeat: a run's id, an experiment's id, a model's name
    and each version's number must match the ref and the file name.
    """
    kind = _kind(ref)
    try:
        store.commit_info(commit)
    except NotFound:
        return [InvalidRecord(ref, "", "(ref)", f"{commit[:12]} is not a commit")]
    snap = store.snapshot(commit)
    problems: list[InvalidRecord] = []
    name = ref.rsplit("/", 1)[-1]

    def check(path: str, schema: str, required: bool, **expect: Any) -> None:
        data = snap.read(path)
        if data is None:
            if required:
                problems.append(InvalidRecord(ref, path, "(document)", "file is missing"))
            return
        found = schemas.check_bytes(schema, data, where=ref, path=path)
        problems.extend(found)
        if found:
            return
        doc = yamlio.load(data)
        for key, value in expect.items():
            if doc.get(key) != value:
                problems.append(
                    InvalidRecord(ref, path, key, f"{doc.get(key)!r} does not match {value!r}")
                )

    if kind == "run":
        check(RUN_FILE, "run", True, id=name)
        check(MANIFEST_FILE, "artifacts", False)
    elif kind == "experiment":
        check(EXPERIMENT_FILE, "experiment", True, id=name)
    elif kind == "model":
        check(MODEL_FILE, "registered-model", True, name=name)
        for entry, is_dir, _ in snap.listdir(VERSIONS_DIR):
            path = f"{VERSIONS_DIR}/{entry}"
            number = None if is_dir else version_number(path)
            if number is None:
                problems.append(InvalidRecord(ref, path, "(document)", "not a version file"))
                continue
            check(path, "model-version", True, name=name, version=number)
    elif kind == "stage":
        for entry, is_dir, _ in snap.listdir(layout.DECLARATIONS_DIR):
            model = None if is_dir else layout.declared_model(entry)
            if model is not None:
                check(declaration_path(model), "stage", True, model=model)
    else:
        problems.append(InvalidRecord(ref, "", "(ref)", "gitml does not know this kind of record"))
    return problems


# -- reports ------------------------------------------------------------------------


@dataclass(frozen=True)
class Renumbered:
    model: str
    old: int
    new: int

    def __str__(self) -> str:
        return f"{self.model}: your version {self.old} is now version {self.new}"


@dataclass
class PushReport:
    """What ``push`` did. With ``problems`` nothing was pushed and no local ref moved."""

    remote: str
    pushed: dict[str, str] = field(default_factory=dict)
    renumbered: list[Renumbered] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)  # sha256 of artifacts sent to the store
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class PullReport:
    """What ``pull`` did: refs updated, notes, and problems (refs left alone)."""

    remote: str
    updated: dict[str, str] = field(default_factory=dict)
    downloaded: list[str] = field(default_factory=list)  # sha256 of artifacts now cached
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _short(ref: str) -> str:
    for prefix, label in (
        (RUNS, "run "),
        (EXPERIMENTS, "experiment "),
        (MODELS, "model "),
        ("refs/heads/", "branch "),
    ):
        if ref.startswith(prefix):
            return label + ref[len(prefix) :]
    return ref


# -- experiments ----------------------------------------------------------------------


def _same_experiment(store: Store, a: str, b: str) -> bool:
    """Whether two experiment commits record the same experiment (creation time aside)."""
    docs = []
    for commit in (a, b):
        data = store.snapshot(commit).read(EXPERIMENT_FILE)
        doc = yamlio.load(data) if data is not None else None
        if not isinstance(doc, dict):
            return False
        doc.pop("creation_time", None)
        docs.append(doc)
    return docs[0] == docs[1]


# -- pull ------------------------------------------------------------------------------


def _checked_out(store: Store) -> str | None:
    head = store.gitdir / "HEAD"
    try:
        text = head.read_text().strip()
    except OSError:
        return None
    return text[len("ref: ") :] if text.startswith("ref: ") else None


def pull(
    store: Store,
    remote: str = "origin",
    *,
    artifacts: SharedStore | None = None,
    settings_root: Path | None = None,
) -> PullReport:
    """Fetch ``remote``'s runs, experiments, models and stages; fast-forward local refs.

    Then download the large artifacts the applied records name that this
    machine's cache lacks (``artifacts``: by default the store of the
    ``.gitml.yaml`` in ``settings_root`` or ``store.root``, opened only when
    there is something to download).
    """
    report = PullReport(remote)
    with _begin_ls_remote(store, remote) as listing:
        local = _local_refs(store)
        # A first pull (no runs here yet) brings what the remote has: its objects
        # are fetched while the refs are listed (10,000 runs: the listing's 0.15 s saved).
        first = not any(ref.startswith(RUNS) for ref in local)
        early = _begin_fetch(store, remote) if first else None
        with early or contextlib.nullcontext():
            if first:
                _import_checks()  # while git fetches
            listed = _listed(store, remote, listing)
    new = {
        ref: theirs
        for ref, theirs in listed.items()
        # Proposals are reviewed where they live: the remote's pull requests.
        if local.get(ref) != theirs and not ref.startswith(PROPOSALS)
    }
    if not new:
        if early is not None:
            early.wait()
        return report
    odd = _fetch_objects(store, remote, new.values(), early)
    head = _checked_out(store)
    message = f"gitml pull {remote}"

    def apply(refs: dict[str, str], checked: Checked) -> None:
        _move_refs(store, _pull_moves(store, refs, local, checked, head, report), message, report)

    # Experiments before the runs they hold, runs before the versions and stages naming them.
    apply({ref: sha for ref, sha in new.items() if ref.startswith(EXPERIMENTS)}, {})
    manifests: dict[str, ArtifactManifest | None] = {}  # of the runs checked here
    with _RunIndexing(store) as indexing:
        for batch, checked in _checked_runs(
            store, {ref: sha for ref, sha in new.items() if ref.startswith(RUNS) and sha not in odd}
        ):
            manifests.update((ref, manifest) for ref, (manifest, _) in checked.items())
            apply(batch, checked)  # while the next batches are checked
            indexing.moved(checked, report)  # while the next batches move
        # The rest, and runs whose ref names no commit, which check_record refuses.
        apply(
            {
                ref: sha
                for ref, sha in new.items()
                if not ref.startswith((EXPERIMENTS, RUNS)) or (ref.startswith(RUNS) and sha in odd)
            },
            {},
        )
    _remember_declarations(store, report)
    _download_artifacts(store, local, report, manifests, artifacts, settings_root)
    return report


def _pull_moves(
    store: Store,
    new: dict[str, str],
    local: dict[str, str],
    checked: Checked,
    head: str | None,
    report: PullReport,
) -> dict[str, tuple[str | None, str]]:
    """Which refs of ``new`` (ref to the remote's commit) to fast-forward, as ref to
    (old, new); the others are reported. ``checked``: runs known to be canonical."""
    moves: dict[str, tuple[str | None, str]] = {}
    for ref, theirs in sorted(new.items()):
        mine = local.get(ref)
        # Asked first: the usual answer, and the cheap one to find (Store.reaches).
        forward = mine is None or _is_ancestor(store, mine, theirs)
        if mine is not None and not forward and _is_ancestor(store, theirs, mine):
            continue  # ours is ahead: push will publish it
        problems = [] if ref in checked else check_record(store, ref, theirs)
        if problems:
            report.problems.extend(f"{_short(ref)} not applied: {p}" for p in problems)
            continue
        if mine is not None and not forward:
            _diverged_on_pull(store, ref, mine, theirs, report)
            continue
        if ref == head:
            report.notes.append(
                f"{_short(ref)} is checked out; not moved (use 'git pull' or 'git merge')"
            )
            continue
        moves[ref] = (mine, theirs)
    return moves


# Below this many runs a pull checks them in its own process alone: starting a
# worker and sending its records back cost more than the share it would take.
PARALLEL_FROM = 2_000

# How much lower the checking processes' priority is than the pulling process's.
CHECKING_NICE = 5

# Ref to (the run's artifact manifest, the run as the query index takes it).
Checked = dict[str, tuple["ArtifactManifest | None", "ReadRun"]]


# A pull moves runs in batches of this many, twice that, four times and so on,
# then as many again halving down (``_batches``): a move rewrites all of
# ``packed-refs`` (or ``git update-ref`` reads every loose ref of the folder),
# so 100 batches of 1,000 cost 100 rewrites of a file growing to 100,000 refs.
# The first and the last batch overlap nothing (the refs wait for the first check;
# the last index waits for the last): 10,000 runs from 500 rather than 1,000 took
# 3.67 s rather than 3.89 s (mean of six alternating pulls; 250: slower again).
RUN_BATCH = 500


def _batches(count: int) -> list[int]:
    """The sizes of the batches a pull checks and moves ``count`` runs in.

    Small at the start, so that the refs start moving early, and small at the
    end: the last batch is indexed after every check is done, with nothing to
    overlap (100,000 runs ending in one batch of 37,000: 2.4 s). On the way
    down, each batch is indexed while the next, half its size, is checked,
    which takes about as long on two cores.
    """
    rising: list[int] = []
    falling: list[int] = []
    size = RUN_BATCH
    while count > 0:
        for sizes in (rising, falling):
            take = min(size, count)
            if take:
                sizes.append(take)
                count -= take
        size *= 2
    return rising + falling[::-1]


def _checked_runs(store: Store, wanted: dict[str, str]) -> Iterator[tuple[dict[str, str], Checked]]:
    """``wanted`` (run ref to commit) in batches, each with those of its run records
    whose files hold exactly what gitml writes, parsed (with their artifact manifest);
    the others are for ``check_record``.

    Checking is Python work, about 0.1 ms a run, and the largest part of a
    first pull of many runs besides fetching (git's work, as for ``git fetch``).
    From ``PARALLEL_FROM`` runs, forked processes, one per core, check the next
    batch while the caller moves the refs of the one given; only where forking
    is safe, in a process running no other thread (the CLI; a server's pull
    checks every run itself, in one batch).
    """
    items = sorted(wanted.items())
    if not items:
        return
    shares = _shares(len(items))
    if shares == 1:
        yield wanted, _canonical_share(store.root, items)
        return
    import multiprocessing

    batches, start = [], 0
    for size in _batches(len(items)):
        batches.append(items[start : start + size])
        start += size
    check = functools.partial(_canonical_share, store.root)
    _import_checks()  # once, here, rather than once in each process forked below
    # The checking processes make thousands of objects a batch and keep none but
    # their results: the cyclic collector, which each time walked all they inherited
    # (pydantic and the models), took a tenth of their time. It is off before they
    # fork, so in them too, and what they inherit is frozen out of it (its pages
    # stay shared). Here it waits for the end: what comes back is kept, and each
    # collection walked it all.
    collecting = gc.isenabled()
    freezing = gc.get_freeze_count() == 0  # a caller's own freeze is left as it is
    gc.disable()
    if freezing:
        gc.freeze()
    try:
        # Niced, so that moving and indexing what they checked keeps pace: the last
        # batches' indexing otherwise lagged behind, with nothing left to overlap.
        with multiprocessing.get_context("fork").Pool(shares, os.nice, (CHECKING_NICE,)) as pool:

            def submit(batch: list[tuple[str, str]]) -> AsyncResult[list[Checked]]:
                return pool.map_async(check, [batch[i::shares] for i in range(shares)])

            pending = submit(batches[0])
            for i, batch in enumerate(batches):
                parts = pending.get()
                if i + 1 < len(batches):
                    pending = submit(batches[i + 1])
                checked: Checked = {}
                for part in parts:
                    checked.update(part)
                yield dict(batch), checked
    finally:
        if freezing:
            gc.unfreeze()
        if collecting:
            gc.enable()


def _import_checks() -> None:
    """Import what checking runs takes, pydantic and the record models (75 ms), and
    build the models' validators (``defer_build``: 45 ms, once in each forked
    process otherwise, between the objects' arrival and the first batch)."""
    import gitml.format.run_text
    import gitml.query.index  # noqa: F401
    from gitml.format.records import ArtifactManifest, Run

    for model in (Run, ArtifactManifest):
        model.model_rebuild(force=True)


def _shares(count: int) -> int:
    """How many forked processes share the check of ``count`` runs."""
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return 1
    return _cores(count)


def _cores(count: int) -> int:
    """How many cores share work on ``count`` items: all of them (at most 8) from
    ``PARALLEL_FROM`` on."""
    if count < PARALLEL_FROM:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


def _canonical_share(root: Path, items: list[tuple[str, str]]) -> Checked:
    """The canonical run records of ``items`` (ref, commit), checked in one process;
    each commit is one (``_fetch_objects`` says which are not: ``<tree>:run.yaml``
    would be read too), so its files are named without ``^{commit}`` (5 us a run).

    The models write only records the schemas accept (a test holds them in
    agreement), so bytes the models give back unchanged need no schema check:
    checking a run against the JSON Schema measured 2 ms, this 13-59 us.
    """
    if not items:
        return {}
    from gitml.format.records import ArtifactManifest
    from gitml.query.index import read_run

    names = [f"{commit}:{file}" for _, commit in items for file in _RUN_FILES]
    blobs = _cat_files(root, names)
    out: Checked = {}
    for i, (ref, commit) in enumerate(items):
        plain, manifest = _plain_run(blobs[2 * i]), None
        if plain is None or plain["id"] != ref[len(RUNS) :]:
            continue
        if blobs[2 * i + 1] is not None:
            manifest = _canonical(ArtifactManifest, blobs[2 * i + 1])
            if manifest is None:
                continue
        # Written for the index here, in the checking processes, not after the moves.
        out[ref] = (None if manifest is None else manifest[0], read_run(commit, plain))
    return out


def _plain_run(data: bytes | None) -> dict[str, Any] | None:
    """The ``to_plain()`` of the run record ``data`` holds when its bytes are canonical:
    read by its layout (``run_text``, 13 us), or else by the model (59 us)."""
    from gitml.format.records import Run
    from gitml.format.run_text import canonical_run

    if data is None:
        return None
    plain = canonical_run(data)
    if plain is not None:
        return plain
    run = _canonical(Run, data)
    return None if run is None else run[1]


_RUN_FILES = (RUN_FILE, MANIFEST_FILE)
R = TypeVar("R", bound="Record")


def _canonical(model: type[R], data: bytes | None) -> tuple[R, dict[str, Any]] | None:
    """The record ``data`` holds and its ``to_plain()``, when its bytes are canonical."""
    if data is None:
        return None
    from gitml.format.records import validate

    try:
        document = yamlio.load(data)
        record = validate(model, document, where="", path="")
    except Exception:  # not YAML (any of PyYAML's errors), or not a record: check_record says
        return None
    # Equal to what the model holds, so equal to what it would write (``to_yaml`` of
    # ``to_plain``); compared as data, which costs a tenth of writing the YAML again.
    plain = record.to_plain()
    return (record, plain) if plain == document else None


# A pull writes new run refs into ``packed-refs`` (Store.create_packed) from this
# many in a batch, and from one per PACKED_BYTES_PER_REF bytes of the file it
# rewrites: a loose ref file cost 0.35-0.5 ms here, rewriting the file 4 us a
# line (90 bytes), so a batch smaller than that share would cost more packed.
PACK_FROM = 64
PACKED_BYTES_PER_REF = 8192


def _packing_from(store: Store) -> int:
    """How many new run refs a batch needs for ``Store.create_packed`` to pay."""
    return max(PACK_FROM, store.packed_refs_stat()[1] // PACKED_BYTES_PER_REF)


def _move_refs(
    store: Store, moves: dict[str, tuple[str | None, str]], message: str, report: PullReport
) -> None:
    """Fast-forward every ref of ``moves`` (ref to (old, new)) by compare-and-swap.

    One ``git update-ref`` transaction moves them all, each only from its old
    value (zeros: it must not exist), or none; one ``set_ref`` each made a
    pull of 10,000 runs spend most of its time locking, fsyncing and logging
    refs. When another writer moved one first, each ref is tried on its own so
    that only the moved ones are left out. git writes the reflogs it keeps
    (the stage branches under ``refs/heads``), as ``git fetch`` would.
    """
    created = [ref for ref, (old, _) in moves.items() if old is None and ref.startswith(RUNS)]
    if len(created) >= _packing_from(store):
        done = store.create_packed({ref: moves[ref][1] for ref in created})
        report.updated.update(done)
        moves = {ref: move for ref, move in moves.items() if ref not in done}
    if not moves:
        return
    zero = "0" * 40
    lines = "".join(
        f"update {ref} {new} {old or zero}\n" for ref, (old, new) in sorted(moves.items())
    )

    def transaction() -> bool:
        done = _git(store, "update-ref", "-m", message, "--stdin", stdin=lines, ok=(0, 1, 128))
        return done.returncode == 0

    if store.moved_together({ref: new for ref, (_, new) in moves.items()}, transaction):
        report.updated.update({ref: new for ref, (_, new) in moves.items()})
        return
    for ref, (old, new) in sorted(moves.items()):
        if store.set_ref(ref, new, old, message):
            report.updated[ref] = new
        else:
            report.problems.append(f"{_short(ref)} moved locally during the pull; pull again")


class _RunIndexing:
    """The query index brought up to date with the pulled runs, from the records
    already checked, batch by batch in a thread while the pull moves the next
    batches: after a pull of 10,000 runs indexing them took 1.5 s more; and the
    first query after it would otherwise read each record again.

    Leaving the ``with`` block waits for the batches, then refreshes the index,
    which finds them indexed and records where the refs now are.
    """

    def __init__(self, store: Store) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from gitml.query.index import QueryIndex

        self.index = QueryIndex(store)
        # Up to date before the first batch moves (a few stat calls, when it is):
        # then the log says all the pull changes, packed-refs included, and the
        # refresh at the end reads it rather than every ref. A pull of thousands
        # of runs outgrows the log, whose restart takes one scan (10,000: 0.04 s).
        self.index.refresh()
        # Its thread starts with the first batch, after _checked_runs forked the
        # checking processes (it forks only while no other thread runs).
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="gitml-pull-index")
        self.batches: list[Future[int]] = []

    def moved(self, runs: Checked, report: PullReport) -> None:
        """Index those of ``runs`` (just checked and moved) that the pull moved."""
        moved = {
            ref[len(RUNS) :]: read
            for ref, (_, read) in runs.items()
            if report.updated.get(ref) == read.commit
        }
        if moved:
            self.batches.append(self.thread.submit(self.index.add_moved, moved))

    def __enter__(self) -> _RunIndexing:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            for batch in self.batches:
                if kind is None:
                    batch.result()  # an indexing failure is the pull's
                else:
                    batch.exception()  # the pull's own failure is the one to report
            if kind is None and self.batches:
                self.thread.submit(self.index.refresh).result()
        finally:
            self.thread.submit(self.index.close).result()
            self.thread.shutdown()


def _remember_declarations(store: Store, report: PullReport) -> None:
    """Put the declarations of the stages the pull moved in the cache of validated
    records, so that the next ``gitml stage show`` reads them without pydantic."""
    stages = sorted((ref, tip) for ref, tip in report.updated.items() if _kind(ref) == "stage")
    if not stages:
        return  # opening the cache cost a pull of runs alone 40 ms
    from gitml.format.record_cache import ValidatedRecords  # sqlite3: not for a no-op pull

    cache = ValidatedRecords(store.data_dir)
    for ref, tip in stages:
        try:
            declared(store, ref[len(STAGES) :], tip, cache)
        except InvalidRecord as exc:  # the schemas passed it: the models and they disagree
            report.problems.append(f"{_short(ref)}: {exc}")


def _download_artifacts(
    store: Store,
    before: dict[str, str],
    report: PullReport,
    manifests: dict[str, ArtifactManifest | None],
    artifacts: SharedStore | None,
    settings_root: Path | None,
) -> None:
    """Cache the external artifacts of the records ``report.updated`` applied.

    ``manifests``: the artifact manifests of runs already read (None: the run has none).
    """
    wanted: dict[str, str] = {}  # sha256 -> what it is, for messages
    for ref, tip in sorted(report.updated.items()):
        if ref in manifests:
            manifest = manifests[ref]
            named = [] if manifest is None else manifest.artifacts
            found = [(_short(ref), a) for a in named if a.storage == "external"]
        else:
            found = _record_artifacts(store, ref, tip, before.get(ref))
        for label, artifact in found:
            wanted.setdefault(artifact.sha256, f"{label}: artifact '{artifact.path}'")
    if not wanted:
        return
    artifacts = artifacts or artifact_store_holds(store, settings_root)
    done, failed = artifacts.download(wanted)
    report.downloaded = done
    if done:
        report.notes.append(f"downloaded {len(done)} artifact(s) from {artifacts.store.location}")
    for sha, exc in sorted(failed.items()):
        report.problems.append(f"{wanted[sha]} (sha256 {sha}) not downloaded: {exc}")


def _diverged_on_pull(store: Store, ref: str, mine: str, theirs: str, report: PullReport) -> None:
    kind = _kind(ref)
    if kind == "experiment" and _same_experiment(store, mine, theirs):
        if store.set_ref(ref, theirs, mine, f"gitml pull {report.remote}: same experiment"):
            report.updated[ref] = theirs
        return
    if kind == "model":
        report.notes.append(
            f"{_short(ref)}: both sides added commits (registered versions); 'gitml push' "
            "re-creates yours after the remote's and renumbers your new versions"
        )
        return
    report.problems.append(
        f"{_short(ref)} has diverged: {mine[:12]} here, {theirs[:12]} on {report.remote}; "
        "nothing was overwritten"
        + (" (review and merge the stage branch with git)" if kind == "stage" else "")
    )


# -- push -------------------------------------------------------------------------------


def artifact_store_holds(store: Store, settings_root: Path | None = None) -> SharedStore:
    """The configured external artifact store, with this machine's cache of it.

    The store is ``artifact_store`` of ``.gitml.yaml`` (in ``settings_root``,
    the work tree, as for a ``Client``): a folder of ``ab/cdef…`` files, or
    ``s3://bucket/prefix``; by default ``.git/gitml/artifacts``, which is
    then the cache too. Called with a sha256 it says whether the store holds
    it (a ``Holds``); push and pull use its batched ``missing``, ``upload``
    and ``download``.
    """
    from gitml.artifacts import shared_store
    from gitml.format import config as config_file

    where = settings_root or store.root
    return shared_store(config_file.load(where), where, store.data_dir)


def _external_artifacts(store: Store, run_id: str, commit: str) -> list[Artifact]:
    from gitml.format.records import ArtifactManifest, parse

    data = store.snapshot(commit).read(MANIFEST_FILE)
    if data is None:
        return []
    manifest = parse(ArtifactManifest, data, where=RUNS + run_id, path=MANIFEST_FILE)
    return [a for a in manifest.artifacts if a.storage == "external"]


def _run_artifacts(store: Store, runs: dict[str, str]) -> list[tuple[str, Artifact]]:
    """The external artifacts the manifests of ``runs`` (ref to commit) name, read by one
    ``git cat-file --batch`` rather than a commit, a tree and a blob read apiece."""
    from gitml.format.records import ArtifactManifest, parse

    refs = sorted(runs)
    found: list[tuple[str, Artifact]] = []
    names = [f"{runs[ref]}^{{commit}}:{MANIFEST_FILE}" for ref in refs]
    manifests = _cat_files(store.root, names, parallel=True)
    for ref, data in zip(refs, manifests, strict=True):
        if data is not None:
            manifest = parse(ArtifactManifest, data, where=ref, path=MANIFEST_FILE)
            found += [(_short(ref), a) for a in manifest.artifacts if a.storage == "external"]
    return found


def _record_artifacts(
    store: Store, ref: str, mine: str, theirs: str | None
) -> list[tuple[str, Artifact]]:
    """The external artifacts that a run commit, or a model's changed versions, name."""
    kind = _kind(ref)
    if kind == "run":
        run_id = ref[len(RUNS) :]
        return [(f"run {run_id}", a) for a in _external_artifacts(store, run_id, mine)]
    if kind != "model":
        return []
    return [
        (f"model {v.name} version {v.version}: run {v.run_id}", a)
        for v in _changed_versions(store, mine, theirs)
        for a in _external_artifacts(store, v.run_id, v.run_commit)
    ]


def _check_artifacts(plan: _Plan, holds: Holds) -> None:
    """Which artifacts the pushed records name the store lacks: to upload, or problems."""
    from gitml.artifacts import SharedStore

    named = {a.sha256 for _, a in plan.artifacts}
    if isinstance(holds, SharedStore):
        absent = holds.missing(named)  # one batch: for a bucket, HEAD requests in parallel
        plan.upload = holds.cached(absent)
        where = f"not in the artifact store {holds.store.location}"
        if holds.cache is not None:
            where = (
                f"neither in the artifact store {holds.store.location} nor in {holds.cache.root}"
            )
    else:
        absent = {sha for sha in named if not holds(sha)}
        where = "not in the artifact store"
    for label, a in plan.artifacts:
        if a.sha256 in absent and a.sha256 not in plan.upload:
            plan.problems.append(f"{label}: artifact '{a.path}' (sha256 {a.sha256}) is {where}")


def _changed_versions(store: Store, mine: str, theirs: str | None) -> list[ModelVersion]:
    from gitml.format.records import ModelVersion, parse

    """The version records at ``mine`` that differ from those at ``theirs``."""
    snap = store.snapshot(mine)
    other = store.snapshot(theirs) if theirs is not None and store.has_object(theirs) else None
    out = []
    for entry, is_dir, sha in snap.listdir(VERSIONS_DIR):
        path = f"{VERSIONS_DIR}/{entry}"
        if is_dir:
            continue
        if other is not None and other.lookup(path) == sha:
            continue
        out.append(parse(ModelVersion, snap.blob(sha), where=mine, path=path))
    return out


@dataclass
class _Plan:
    push: dict[str, str] = field(default_factory=dict)  # ref -> new tip
    adopt: dict[str, tuple[str, str]] = field(default_factory=dict)  # ref -> (mine, theirs)
    rebase: dict[str, tuple[str, str]] = field(default_factory=dict)  # model ref -> (mine, theirs)
    remote: dict[str, str] = field(default_factory=dict)  # the remote's refs, as listed
    artifacts: list[tuple[str, Artifact]] = field(default_factory=list)  # (whose, artifact)
    upload: set[str] = field(default_factory=set)  # sha256 the store lacks and the cache has
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def push(
    store: Store,
    remote: str = "origin",
    *,
    holds: Holds | None = None,
    settings_root: Path | None = None,
) -> PushReport:
    """Publish every local run, experiment, model and stage branch that the remote lacks.

    ``holds``: what says whether the artifact store holds an artifact; by
    default the store of the ``.gitml.yaml`` in ``settings_root`` or
    ``store.root`` (``artifact_store_holds``), opened only when there is
    something to push.
    """
    report = PushReport(remote)
    uploaded: list[str] = []
    for _ in range(PUSH_ATTEMPTS):
        theirs, local = _both_sides(store, remote)
        differ = [ref for ref, sha in local.items() if theirs.get(ref) != sha]
        if not differ:
            return report  # nothing to publish: no record read, no artifact store opened
        from gitml.artifacts import SharedStore

        holds = holds or artifact_store_holds(store, settings_root)
        _fetch_objects(store, remote, [theirs[ref] for ref in differ if ref in theirs])
        plan = _classify(store, local, theirs, differ)
        _check_artifacts(plan, holds)
        plan.remote = theirs
        report.notes = plan.notes
        if plan.problems:
            report.problems = plan.problems
            return report
        if plan.upload and isinstance(holds, SharedStore):
            # Before any ref moves anywhere: a pushed record never names a missing object.
            uploaded += holds.upload(plan.upload)
            report.uploaded = sorted(set(uploaded))
        if report.uploaded:
            report.notes.append(
                f"uploaded {len(report.uploaded)} artifact(s) to {_location(holds)}"
            )
        _apply_locally(store, plan, report)
        if not plan.push:
            return report
        lost = _push_atomic(store, remote, plan)
        if lost is None:
            report.pushed.update(plan.push)
            return report
    raise Conflict(
        f"push to {remote}: the remote kept moving ({PUSH_ATTEMPTS} attempts, last: {lost}); "
        "try again"
    )


def _classify(
    store: Store,
    local: dict[str, str],
    remote: dict[str, str],
    differ: list[str],
) -> _Plan:
    plan = _Plan()
    runs: dict[str, str] = {}  # run ref -> the commit pushed, for _run_artifacts
    for ref in sorted(differ):
        # If the remote's ref moves on after the listing, the push is no longer a
        # fast-forward there and starts again.
        mine, theirs = local[ref], remote.get(ref)
        kind = _kind(ref)
        if kind is None:
            continue  # not gitml's (refs/gitml/<unknown>): neither pushed nor judged
        if theirs == mine:
            continue
        if theirs is None or _is_ancestor(store, theirs, mine):
            plan.push[ref] = mine
        elif _is_ancestor(store, mine, theirs):
            plan.notes.append(f"{_short(ref)}: the remote is ahead; 'gitml pull' brings it")
            continue
        elif kind == "model":
            plan.rebase[ref] = (mine, theirs)
            plan.push[ref] = mine  # tip replaced after the rebase
        elif kind == "experiment" and _same_experiment(store, mine, theirs):
            plan.adopt[ref] = (mine, theirs)
            continue
        elif kind == "run":
            plan.problems.append(
                f"run {ref[len(RUNS) :]} has diverged: {mine[:12]} here and {theirs[:12]} on "
                "the remote both add commits; runs are append-only and are not overwritten "
                "(keep one side: 'git update-ref' the ref, then push)"
            )
            continue
        elif kind == "stage":
            plan.problems.append(
                f"{_short(ref)} is not a fast-forward of the remote's {theirs[:12]}: stage "
                "changes are reviewed, never forced; merge the remote's branch with git "
                "(or propose the change as a pull request) and push again"
            )
            continue
        else:
            plan.problems.append(f"{_short(ref)} has diverged from the remote")
            continue
        if kind == "run":
            runs[ref] = mine
        else:
            plan.artifacts.extend(_record_artifacts(store, ref, mine, theirs))
    plan.artifacts.extend(_run_artifacts(store, runs))
    return plan


def _location(holds: Holds) -> str:
    from gitml.artifacts import SharedStore

    return holds.store.location if isinstance(holds, SharedStore) else "the artifact store"


def _apply_locally(store: Store, plan: _Plan, report: PushReport) -> None:
    """Adopt the remote's experiments; renumber diverged models and the stages naming them."""
    for ref, (mine, theirs) in plan.adopt.items():
        if not store.set_ref(ref, theirs, mine, "gitml push: same experiment as the remote"):
            raise Conflict(f"{_short(ref)} moved locally during the push; push again")
    renumbered: Renumbering = {}
    rebased: dict[str, tuple[str | None, str | None]] = {}
    for ref, (mine, theirs) in plan.rebase.items():
        tip, mapping = rebase_model(store, ref, mine, theirs)
        rebased[ref] = (mine, tip)
        if mapping:
            renumbered[ref[len(MODELS) :]] = mapping
    stage_moves = renumber_stages(store, renumbered, plan.remote) if renumbered else {}
    for ref, (old, new) in [*rebased.items(), *stage_moves.items()]:
        if old != new and not store.set_ref(ref, new, old, "gitml push: renumbered versions"):
            raise Conflict(f"{_short(ref)} moved locally during the push; push again")
        if new is None:
            plan.push.pop(ref, None)
        elif ref in plan.push or old is None:  # old None: a renamed proposal's new name
            plan.push[ref] = new
    # A retried push may renumber again: report each version's first and last number.
    for name, mapping in sorted(renumbered.items()):
        earlier = {r.new: r for r in report.renumbered if r.model == name}
        for current, after in sorted(mapping.items()):
            first = earlier.pop(current, None)
            if first is not None:
                report.renumbered.remove(first)
            report.renumbered.append(Renumbered(name, first.old if first else current, after))


def _push_atomic(store: Store, remote: str, plan: _Plan) -> str | None:
    """Push ``plan.push`` in one atomic push; what git said when another pusher won.

    The refs go through two glob refspecs from ``refs/gitml-outgoing/<remote>/``,
    which holds exactly the planned tips: git matches every explicit refspec and
    every ``--force-with-lease`` against every ref, so naming 10,000 refs on the
    command line made a first push take minutes (quadratic), where a glob is
    matched once. No lease is needed for the compare-and-swap: every ref pushed
    is a fast-forward of the tip it was classified against, and git refuses a
    push that is not a fast-forward of what the remote holds when it receives it
    ("fetch first", "non-fast-forward"); ``--atomic`` then lands nothing.

    When the plan is every local ref that differs from the remote, at its tip as
    it is now, the glob refspecs start from the records' own refs instead, as a
    plain ``git push`` would: writing and then deleting an outgoing ref for each
    of 10,000 new runs took more than half of such a push. A ref moved by
    another local writer after that comparison is pushed at its new tip, a
    fast-forward of the one classified (records move forward only), or refused
    by the remote's fast-forward check.
    """
    refspecs = [f"{GITML}*:{GITML}*", f"{STAGES}*:{STAGES}*"]
    base = f"{OUTGOING}{remote}/"
    staged = _local_differences(store, plan.remote) != plan.push
    if staged:
        _set_refs(store, base, {_outgoing(base, ref): sha for ref, sha in plan.push.items()})
        refspecs = [f"{base}gitml/*:{GITML}*", f"{base}heads/*:refs/heads/*"]
    try:
        done = _git(store, "push", "--atomic", "--porcelain", remote, *refspecs, ok=(0, 1))
    finally:
        if staged:
            _set_refs(store, base, {})
    if done.returncode == 0:
        return None
    # Another pusher got there first: the remote's ref is no longer an ancestor of
    # ours, or its own ref transaction found a ref already moved or locked (it locks
    # after the check). A hook's refusal ("pre-receive hook declined") is final.
    lost = (
        "(fetch first)",
        "(non-fast-forward)",
        "(atomic transaction failed)",
        "(failed to update ref)",
    )
    detail = command.said(done.stderr, done.stdout, done.returncode)
    if any(word in done.stdout for word in lost):
        return detail
    raise GitFailed(f"git push to {remote}", detail)


def _local_differences(store: Store, remote: dict[str, str]) -> dict[str, str]:
    """Each local gitml ref and stage branch whose tip the remote's listing lacks."""
    return {ref: sha for ref, sha in _local_refs(store).items() if remote.get(ref) != sha}


def _outgoing(base: str, ref: str) -> str:
    """Where ``ref`` waits to be pushed: ``refs/gitml/x`` as ``<base>gitml/x``,
    ``refs/heads/gitml/x`` as ``<base>heads/gitml/x``."""
    return base + ref[len("refs/") :]


def _set_refs(store: Store, base: str, wanted: dict[str, str]) -> None:
    """Make the refs under ``base`` exactly ``wanted``, in one ``git update-ref`` transaction.

    These refs are no records (nothing indexes or validates them), so they move
    with git's own batch update rather than one compare-and-swap each.
    """
    listed = _git(store, "for-each-ref", "--format=%(refname)", base).stdout.split()
    lines = [f"delete {ref}" for ref in listed if ref not in wanted]
    lines += [f"update {ref} {sha}" for ref, sha in sorted(wanted.items())]
    if lines:
        _git(store, "update-ref", "--stdin", stdin="".join(f"{line}\n" for line in lines))

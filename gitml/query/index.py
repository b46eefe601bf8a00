"""The query index: a SQLite copy of every run record, derived from the refs.

Git stays the only source of truth. The index lives at
``.git/gitml/index.sqlite``, can be deleted at any time, and is brought up to
date before every query by comparing what the refs say with what it holds:

- every ref update gitml makes is one line in ``.git/gitml/refs.log``
  (``Store._log_ref_change``); a refresh reads the lines it has not seen and
  re-indexes those runs only;
- anything else that moves refs (``git fetch``, ``git update-ref``, a second
  tool) shows as a change of the runs folder's mtime that the logged updates
  do not explain, or of ``packed-refs``; then, and every ``FULL_SCAN_EVERY``
  seconds while the folder keeps changing, a full scan lists the loose refs
  with their inode and mtime (a rewritten ref is a new file) and reads only
  the refs that moved. On kernels with fine-grained timestamps (Linux 6.13
  and later) every change of the folder shows as a new mtime; on older ones
  two changes within one clock tick can share one, which the periodic scan
  catches.

So a refresh costs a few ``stat`` calls when nothing moved and work
proportional to what moved otherwise; a scan of every ref at every query
(about 1 s per 10,000 refs) is never needed. Each refresh is one SQLite
transaction in WAL mode: readers see the index before or after it, never
half-way, and never wait for it.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from gitml.errors import InvalidRecord, NotFound
from gitml.format import layout
from gitml.format.record_cache import discard
from gitml.git.store import PACKED_REFS, PackedStat, Store

if TYPE_CHECKING:
    from gitml.format.records import Run

RUNS_PREFIX = layout.RUNS.rstrip("/")  # the folder of run refs, as the store's listings take it
SCHEMA_VERSION = "7"
FULL_SCAN_EVERY = 600.0  # seconds: the safety net for changes the mtimes cannot show
# The ref log starts anew (and a full scan follows) once it is longer than
# LOG_BYTES_PER_RUN for each run indexed, within these bounds: a scan of refs
# whose files did not change costs about what reading half as many log lines
# (130 bytes each) does, and one scan every 2,000 or so updates keeps the log at
# a few bytes a run in a large store (10,000 runs: 0.1 s a scan).
COMPACT_LOG_BYTES = 256 * 1024
COMPACT_LOG_FROM = 16 * 1024
LOG_BYTES_PER_RUN = 64

Progress = Callable[[int, int], None]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    n INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    commit_sha BLOB NOT NULL,
    experiment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    user TEXT NOT NULL,
    parent_run_id TEXT,
    source_commit BLOB,
    source_branch TEXT,
    source_dirty INTEGER NOT NULL,
    entry_point TEXT,
    extra TEXT,
    params_json TEXT,
    tags_json TEXT,
    metrics_json TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start_time DESC);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment_id, start_time DESC);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS params (
    run INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS params_by_value ON params (key, value);
CREATE TABLE IF NOT EXISTS tags (
    run INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (key, value);
CREATE TABLE IF NOT EXISTS metrics (
    run INTEGER NOT NULL, key TEXT NOT NULL, value REAL, is_nan INTEGER NOT NULL,
    step INTEGER NOT NULL, timestamp INTEGER NOT NULL,
    PRIMARY KEY (run, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_by_value ON metrics (key, value);
CREATE TABLE IF NOT EXISTS loose (
    name TEXT PRIMARY KEY, inode INTEGER NOT NULL, mtime INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS broken (
    run_id TEXT PRIMARY KEY, commit_sha BLOB NOT NULL, error TEXT NOT NULL
) WITHOUT ROWID;
"""


class QueryIndex:
    """The index of one store's runs."""

    def __init__(
        self,
        store: Store,
        path: Path | None = None,
        *,
        before_read: Callable[[], None] | None = None,
    ) -> None:
        """``before_read``: called before each read, refresh and rebuild, to commit what
        should show in the refs by then (runs journaled and not committed yet)."""
        self.store = store
        self.path = path or store.data_dir / "index.sqlite"
        self._before_read = before_read
        # One connection per thread: sqlite3 lets a connection serve only the
        # thread that opened it, and servers query from their thread pools.
        # WAL lets those connections read side by side; writes take turns.
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        # Bumped when a damaged file is replaced: each thread's connection to
        # the old file is closed (by that thread) and a new one opened.
        self._generation = 0

    def _settle(self) -> None:
        if self._before_read is not None:
            self._before_read()

    # -- connection ------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema made current) on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation:
            self._forget(conn)
            conn = None
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread off only so that close() may close every
            # thread's connection; each is still used by its own thread alone.
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            try:
                _prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            self._local.generation = self._generation
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for conn in opened:
            conn.close()

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._opened_lock:
            if conn in self._opened:
                self._opened.remove(conn)
        self._local.conn = None
        conn.close()

    def _healing(self, work: Callable[[], T], redo: Callable[[], T] | None = None) -> T:
        """``work()``; if it finds the file damaged, a new file indexed from the refs
        and ``redo()`` (by default: ``work()`` again).

        The index is derived from the refs: a file that SQLite finds is not a
        database, or whose header or pages are garbled or cut short, is only a
        rebuild away from whole again.
        """
        try:
            return work()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._forget(conn)
        with self._opened_lock:
            self._generation += 1
        discard(self.path)
        if redo is not None:
            return redo()
        self._refresh(full=True, progress=None)
        return work()

    # -- keeping up with the refs ----------------------------------------------

    def refresh(
        self,
        *,
        full: bool = False,
        progress: Progress | None = None,
        parsed: Mapping[str, ReadRun] | None = None,
    ) -> int:
        """Bring the index up to date with the refs; returns how many runs changed.

        ``parsed``: run id to the run records the caller has just read and
        validated (a pull); a run whose ref is at that commit is not read again.
        """
        self._settle()
        return self._healing(
            lambda: self._refresh(full=full, progress=progress, parsed=parsed),
            lambda: self._refresh(full=True, progress=progress, parsed=parsed),
        )

    def add_moved(self, parsed: Mapping[str, ReadRun]) -> int:
        """Index the runs of ``parsed`` (run id to record) whose refs the caller has
        just moved to those records' commits; returns how many runs changed.

        Each ref is read again, and a run whose ref another writer moved since is
        indexed from its ref. A pull calls this for each batch of runs it moves,
        while it moves the next; the ``refresh`` after the last finds them indexed.
        """

        def work() -> int:
            stamps: dict[str, tuple[int, int]] = {}
            with _write(self.conn):
                moved = {run_id: r.commit for run_id, r in parsed.items()}
                changed = self._apply(moved, parsed, stamps)
                # What the refresh's scan would otherwise read each ref again to learn.
                self.conn.executemany(
                    "INSERT OR REPLACE INTO loose VALUES (?, ?, ?)",
                    [(name, inode, mtime) for name, (inode, mtime) in stamps.items()],
                )
                return changed

        return self._healing(work)

    def _refresh(
        self,
        *,
        full: bool,
        progress: Progress | None,
        parsed: Mapping[str, ReadRun] | None = None,
    ) -> int:
        conn = self.conn
        folder = self.store.ref_dir(RUNS_PREFIX)
        mtime = _mtime(folder)
        packed = self.store.packed_refs_stat()
        log_size = _size(self.store.ref_log)
        if not full and self._unchanged(mtime, packed, log_size):
            return 0
        old_log = self._restart_log() if self._log_outgrown(log_size) else None
        with _write(conn):
            state = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            offset = int(state.get("log_offset", "0"))
            if log_size < offset:  # the log was compacted by another refresher
                offset = 0
            if old_log is None:
                moved, chain_end, packed_end, log_end = self._read_log(
                    offset, int(state.get("dir_mtime", "0")), state.get("packed", "")
                )
            else:  # the scan below covers what the old log said
                moved, chain_end, packed_end, log_end = {}, -1, "", 0
            since_scan = time.time() - float(state.get("scanned_at", "0"))
            need_scan = (
                full
                or chain_end != mtime
                or packed_end != _packed_text(packed)
                or (since_scan > FULL_SCAN_EVERY and mtime != int(state.get("scan_mtime", "-1")))
            )
            if need_scan:
                changed = self._scan(progress, parsed or {})
                _set_meta(conn, "scanned_at", repr(time.time()))
                _set_meta(conn, "scan_mtime", str(mtime))
            else:
                changed = self._apply(moved, parsed or {})
            _set_meta(conn, "log_offset", str(log_end))
            _set_meta(conn, "dir_mtime", str(mtime))
            _set_meta(conn, "packed", _packed_text(packed))
            _set_meta(conn, "refreshed_at", repr(time.time()))
        if old_log is not None:
            old_log.unlink(missing_ok=True)  # all it said, the scan has seen
        return changed

    def rebuild(self, progress: Progress | None = None) -> int:
        """Forget everything and index every run again; returns the number indexed.

        The secondary indexes are dropped while the rows go in and built once
        at the end, which is about twice as fast as keeping them up to date.
        """
        self._settle()
        return self._healing(lambda: self._rebuild(progress))

    def _rebuild(self, progress: Progress | None) -> int:
        conn = self.conn
        with _write(conn):
            for table in _TABLES[:-1]:  # all but meta
                conn.execute(f"DELETE FROM {table}")
            for name in _SECONDARY_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
            _set_meta(conn, "dir_mtime", "0")
        try:
            self._refresh(full=True, progress=progress)
        finally:
            with _write(conn):
                _create(conn)
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])

    def _unchanged(self, mtime: int, packed: PackedStat, log_size: int) -> bool:
        state = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        return (
            str(mtime) == state.get("dir_mtime")
            and _packed_text(packed) == state.get("packed")
            and str(log_size) == state.get("log_offset")
        )

    def _read_log(
        self, offset: int, start: int, packed_start: str
    ) -> tuple[dict[str, str], int, str, int]:
        """Runs moved by logged updates since ``offset``, where their mtime chain ends,
        where the chain of ``packed-refs`` rewrites from ``packed_start`` (a
        ``_packed_text``) ends, and the new offset. A chain ends at -1 (or "") when
        an unlogged change broke it."""
        try:
            with open(self.store.ref_log, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return {}, start, packed_start, 0
        end = offset + data.rfind(b"\n") + 1 if data else offset
        moved: dict[str, str] = {}
        chain, packed = start, packed_start
        prefix = RUNS_PREFIX + "/"
        for raw in data[: end - offset].splitlines():
            sha, ref, before, after = raw.decode().split(" ")
            if ref == PACKED_REFS:
                # As for the folder: a rewrite that did not start where the last left
                # the file, and is not one already seen, means an unlogged one between.
                before, after = before.replace(":", " "), after.replace(":", " ")
                packed = after if before == packed else packed if after == packed else ""
                continue
            if not ref.startswith(prefix):
                continue
            moved[ref[len(prefix) :]] = sha
            if int(before) == chain:
                chain = int(after)
            elif int(after) != chain:
                # It did not start where the last update left the folder, and
                # is not one the index already saw: something unlogged touched
                # the folder in between (or writers overlapped). Scan.
                chain = -1
        return moved, chain, packed, end

    def _apply(
        self,
        moved: dict[str, str],
        parsed: Mapping[str, ReadRun],
        stamps: dict[str, tuple[int, int]] | None = None,
    ) -> int:
        """Index the runs of ``moved`` (run id to the commit a logged update moved it
        to) whose rows differ, each from where its ref is now; ``stamps``: filled
        with the (inode, mtime) of each loose ref file read."""
        names = list(moved)
        current: dict[str, str] = {}
        for i in range(0, len(names), _MAX_VARIABLES):  # SQLite's limit on "?"s in a statement
            part = names[i : i + _MAX_VARIABLES]
            for table in ("runs", "broken"):
                current.update(
                    self.conn.execute(
                        f"SELECT run_id, {_SHA} FROM {table} WHERE run_id IN ({_marks(len(part))})",
                        part,
                    ).fetchall()
                )
        changed = [name for name, sha in moved.items() if current.get(name) != sha]
        # The log says what moved; the ref says where it is now (a later update
        # may already be past the logged one).
        batch = _Rows()
        # One listing of the folder rather than an open that fails for each packed run
        # (a pull packs thousands), and one look at packed-refs: 4,000 pulled runs
        # 0.17 -> 0.13 s. A ref written after the listing is logged after it, for the
        # next refresh.
        listed = self.store.loose_names([RUNS_PREFIX]) if changed else set()
        packed = self.store.packed_tips() if changed else {}
        for name in changed:
            if name in current:  # a new run has no rows to delete (a pull brings thousands)
                batch.drop(name)
            ref = f"{RUNS_PREFIX}/{name}"
            if ref in listed:
                loose, stamp = self.store.read_loose_ref_stamped(RUNS_PREFIX, name)
                if stamps is not None and loose is not None and stamp is not None:
                    stamps[name] = stamp
                # Gone since the listing: packed meanwhile (packed-refs read again).
                tip = loose or self.store.packed_tip(ref)
            else:
                tip = packed.get(ref)
            known = parsed.get(name)
            if known is not None and known.commit == tip:
                batch.add_read(known)
            else:
                self._index_run(batch, name, tip)
        with _bulk(self.conn, len(changed)):
            batch.write(self.conn)
        return len(changed)

    def _scan(self, progress: Progress | None, parsed: Mapping[str, ReadRun]) -> int:
        conn = self.conn
        loose = self.store.loose_refs(RUNS_PREFIX)
        known = {name: (inode, mtime) for name, inode, mtime in conn.execute("SELECT * FROM loose")}
        packed = self.store.packed_refs(RUNS_PREFIX)
        indexed = dict(conn.execute(f"SELECT run_id, {_SHA} FROM runs").fetchall())
        indexed.update(conn.execute(f"SELECT run_id, {_SHA} FROM broken").fetchall())
        wanted: dict[str, str | None] = dict(packed)
        for name, stamp in loose.items():
            if known.get(name) == stamp and name in indexed:
                wanted[name] = indexed[name]
            else:
                wanted[name] = self.store.read_loose_ref(RUNS_PREFIX, name)
        todo = [(n, s) for n, s in wanted.items() if s is not None and indexed.get(n) != s]
        gone = [n for n in indexed if wanted.get(n) is None]
        total = len(todo) + len(gone)
        with _bulk(conn, len(todo)):
            self._write_scanned(todo, gone, indexed, (known, loose), parsed, progress)
        return total

    def _write_scanned(
        self,
        todo: list[tuple[str, str]],
        gone: list[str],
        indexed: dict[str, str],
        stamps: tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]],
        parsed: Mapping[str, ReadRun],
        progress: Progress | None,
    ) -> None:
        """Index ``todo`` (run id, commit), drop ``gone``, and keep the loose refs'
        ``stamps``: (those the index held, those the scan found)."""
        conn = self.conn
        known, loose = stamps
        total = len(todo) + len(gone)
        dropped = _Rows()
        for name in (*gone, *(n for n, _ in todo if n in indexed)):
            dropped.drop(name)
        dropped.write(conn)
        done = len(gone)
        ready = _Rows()
        for name, sha in todo:
            if name in parsed and parsed[name].commit == sha:
                ready.add_read(parsed[name])
        done += ready.count
        ready.write(conn)
        todo = [(n, s) for n, s in todo if n not in parsed or parsed[n].commit != s]
        for rows in _read_runs(self.store, todo):
            rows.write(conn)
            done += rows.count
            if progress is not None:
                progress(done, total)
        # Only the stamps that changed: after a pull of 100,000 runs (add_moved wrote
        # theirs) rewriting them all took a second.
        conn.executemany(
            "DELETE FROM loose WHERE name = ?", [(n,) for n in known if n not in loose]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO loose VALUES (?, ?, ?)",
            [(n, i, m) for n, (i, m) in loose.items() if known.get(n) != (i, m)],
        )
        if progress is not None:
            progress(total, total)

    def _index_run(self, batch: _Rows, run_id: str, sha: str | None) -> None:
        if sha is not None:
            batch.add_ref(self.store, run_id, sha)

    def _log_outgrown(self, size: int) -> bool:
        """Whether a ref log of ``size`` bytes is past its bounds or its share per run."""
        if size > COMPACT_LOG_BYTES:
            return True
        if size <= COMPACT_LOG_FROM:
            return False
        # Counted before the refresh: none yet gives no share to judge by.
        runs: int = self.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        return runs > 0 and size > LOG_BYTES_PER_RUN * runs

    def _restart_log(self) -> Path | None:
        """Start a new ref log, for a scan to cover what the old one said; the old one's
        new path, None when there was none. Scanning once costs what applying the log
        would, and a log started anew after that cost a second scan (a pull of 10,000
        runs logs 1.3 MB).

        A writer appends to the log only after its ref moved, so any line still
        landing in the old file describes a ref the scan (which starts after the
        rename) already sees.
        """
        log = self.store.ref_log
        old = log.with_suffix(".old")
        try:
            os.replace(log, old)
        except FileNotFoundError:
            return None
        return old

    def compact(self) -> tuple[int, int]:
        """Write the index anew, without its unused space (SQLite's ``VACUUM``, as
        ``git gc`` packs the objects); (bytes before, bytes after), its files' sizes.

        Rows added one refresh at a time leave pages a third empty or more. A
        refresh waits for it.
        """

        def work() -> tuple[int, int]:
            before = self._size()
            self.refresh()
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return before, self._size()

        return self._healing(work)

    def _size(self) -> int:
        """Bytes of the index's file and its write-ahead log (``-shm`` is shared
        memory, gone when the last connection closes)."""
        return sum(_size(Path(f"{self.path}{s}")) for s in ("", "-wal"))

    # -- reading -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._healing(self._status)

    def _status(self) -> dict[str, Any]:
        conn = self.conn
        state = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return {
            "path": str(self.path),
            "runs": conn.execute("SELECT count(*) FROM runs").fetchone()[0],
            "broken": self._broken(),
            "size_bytes": self._size(),
            "refreshed_at": float(state["refreshed_at"]) if "refreshed_at" in state else None,
            "scanned_at": float(state["scanned_at"]) if "scanned_at" in state else None,
        }

    def broken(self) -> list[str]:
        """Why each record the index skipped was skipped, one line each."""
        return self._healing(self._broken)

    def _broken(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT error FROM broken ORDER BY run_id")]

    def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on a consistent view of the index, brought up to date with the refs first."""
        self._settle()

        def attempt() -> T:
            self._refresh(full=False, progress=None)
            with self.reading() as conn:
                return work(conn)

        return self._healing(attempt)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A consistent view for the queries of one search."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")


# A commit's id as its hex text, from the 20 bytes a row keeps (half the text's size);
# the source commit is kept so too.
_SHA = "lower(hex(commit_sha))"
# Runs a query names at once: under SQLite's limit on parameters (32,766).
_BATCH = 10_000
# A run record as JSON text, joined by SQLite from the run's row, for pydantic's JSON
# validation (three times faster than from Python objects), in the model's field
# order and without the fields at their defaults (each saves validation time). The
# maps come as Python wrote them (``_run_rows``): SQLite before 3.43 writes a REAL
# with 15 digits, which is not always the same number, and has no NaN.
_RECORD_JSON = """'{"id":"' || r.run_id || '","experiment_id":' || json_quote(r.experiment_id)
|| ',"name":' || json_quote(r.name) || ',"status":"' || r.status || '"'
|| CASE r.lifecycle_stage WHEN 'active' THEN ''
   ELSE ',"lifecycle_stage":"' || r.lifecycle_stage || '"' END
|| ',"start_time":' || r.start_time
|| CASE WHEN r.end_time IS NULL THEN '' ELSE ',"end_time":' || r.end_time END
|| ',"user":' || json_quote(r.user)
|| CASE WHEN r.parent_run_id IS NULL THEN '' ELSE ',"parent_run_id":"' || r.parent_run_id || '"' END
|| ',"source":{' || substr(
    CASE WHEN r.source_commit IS NULL THEN ''
    ELSE ',"commit":"' || lower(hex(r.source_commit)) || '"' END
    || CASE WHEN r.source_branch IS NULL THEN ''
    ELSE ',"branch":' || json_quote(r.source_branch) END
    || CASE WHEN r.source_dirty THEN ',"dirty":true' ELSE '' END
    || CASE WHEN r.entry_point IS NULL THEN ''
    ELSE ',"entry_point":' || json_quote(r.entry_point) END,
    2)
|| '},"params":' || coalesce(r.params_json, '{}') || ',"tags":' || coalesce(r.tags_json, '{}')
|| ',"metrics":' || coalesce(r.metrics_json, '{}') || '}'"""


def records(conn: sqlite3.Connection, numbers: Sequence[int]) -> list[Run]:
    """The records of the runs numbered ``numbers`` (``runs.n``), in that order, made
    again from their rows (in the view ``conn`` reads)."""
    from gitml.format.records import Run

    texts: dict[int, str] = {}
    for start in range(0, len(numbers), _BATCH):
        batch = list(numbers[start : start + _BATCH])
        marks = ",".join("?" * len(batch))
        for n, text, extra in conn.execute(
            f"SELECT r.n, {_RECORD_JSON}, r.extra FROM runs r WHERE r.n IN ({marks})", batch
        ):
            texts[n] = text if extra is None else _with_extra(text, extra)
    # The validator itself: model_validate_json's wrapper costs 2 ms a thousand runs.
    validate = Run.__pydantic_validator__.validate_json
    return [validate(texts[n]) for n in numbers]


def _with_extra(text: str, extra: str) -> str:
    """A record's JSON with the fields ``extra`` (``_extra``) holds put back."""
    plain = json.loads(text)
    more = json.loads(extra)
    plain["source"].update(more.pop("source", {}))
    plain.update(more)
    return _COMPACT.encode(plain)


# A run's rows: its row of ``runs``, then its rows of ``params``, ``tags`` and ``metrics``.
RunRows = tuple[
    tuple[Any, ...], list[tuple[str, str, str]], list[tuple[str, str, str]], list[tuple[Any, ...]]
]


class ReadRun(NamedTuple):
    """A run record read and validated, as the index's rows (``read_run``): a pull
    makes them in its checking processes, where plain rows, unlike the record's
    model, cost little to send back, for ``QueryIndex.refresh`` and ``add_moved``."""

    commit: str
    run_id: str
    rows: RunRows | Unstorable


class Unstorable(NamedTuple):
    """Where and why SQLite cannot hold a record."""

    field: str
    why: str


def read_run(commit: str, plain: dict[str, Any]) -> ReadRun:
    """The run record ``plain`` (a ``Run``'s ``to_plain()``) at ``commit`` as the index's
    rows, or why SQLite cannot hold it: the field at fault."""
    rows = _run_rows(plain, commit)
    run_id = plain["id"]
    if _storable(rows):
        return ReadRun(commit, run_id, rows)
    # Every value of the rows is, or is in the JSON of, a value of the record.
    found = _unstorable(plain, "")
    assert found is not None, f"run {run_id}: SQLite refuses a value the record does not hold"
    return ReadRun(commit, run_id, Unstorable(*found))


def _extra(plain: dict[str, Any]) -> str | None:
    """What of a record (``plain``: its ``to_plain()``) neither a column of ``runs`` nor
    a row of ``params``, ``tags`` or ``metrics`` holds, and is not at its default, as
    JSON; None when that is nothing, as for most runs. The index keeps no second copy
    of what its rows hold: that copy was a third of its size."""
    run, source = _defaults()
    kept = {
        k: v
        for k, v in plain.items()
        if k not in _HELD and k != "source" and (k not in run or v != run[k])
    }
    moved = {
        k: v
        for k, v in plain.get("source", {}).items()
        if k not in _HELD_SOURCE and (k not in source or v != source[k])
    }
    if moved:
        kept["source"] = moved
    return _COMPACT.encode(kept) if kept else None


# The fields of a run record (and of its source) that columns or rows hold.
_HELD = frozenset(
    [
        "id",
        "experiment_id",
        "name",
        "status",
        "lifecycle_stage",
        "start_time",
        "end_time",
        "user",
        "parent_run_id",
        "params",
        "tags",
        "metrics",
    ]
)
_HELD_SOURCE = frozenset(("commit", "branch", "dirty", "entry_point"))


# One encoder for every record: json.dumps builds one a call when given options.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@functools.cache
def _defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    """The defaults of a run record's optional fields, and of its source's."""
    from gitml.format.records import Run, Source

    def of(model: type[Run] | type[Source]) -> dict[str, Any]:
        fields = model.model_fields.items()
        return {
            n: f.get_default(call_default_factory=True) for n, f in fields if not f.is_required()
        }

    return of(Run), of(Source)


def _run_rows(plain: dict[str, Any], sha: str) -> RunRows:
    """The rows of the run record ``plain`` (a ``Run``'s ``to_plain()``) at commit ``sha``."""
    run_id, source, params, tags, metrics = (
        plain["id"],
        plain["source"],
        plain["params"],
        plain["tags"],
        plain["metrics"],
    )
    commit = source["commit"]
    row = (
        run_id,
        bytes.fromhex(sha),
        plain["experiment_id"],
        plain["name"],
        plain["status"],
        plain["lifecycle_stage"],
        plain["start_time"],
        plain["end_time"],
        plain["user"],
        plain["parent_run_id"],
        None if commit is None else bytes.fromhex(commit),
        source["branch"],
        int(source["dirty"]),
        source["entry_point"],
        _extra(plain),
        # Params, tags and the metrics' latest values again, as the JSON a record is
        # made of (``records``), each None for none: joining the rows of params and
        # tags for each run costs SQLite half the time of making a thousand records.
        _COMPACT.encode(params) if params else None,
        _COMPACT.encode(tags) if tags else None,
        _COMPACT.encode(metrics) if metrics else None,
    )
    metric_rows = [
        # SQLite has no NaN (it would store NULL anyway): NULL plus a flag.
        (
            run_id,
            k,
            None if math.isnan(m["value"]) else m["value"],
            int(math.isnan(m["value"])),
            m["step"],
            m["timestamp"],
        )
        for k, m in metrics.items()
    ]
    return (
        row,
        [(run_id, k, v) for k, v in params.items()],
        [(run_id, k, v) for k, v in tags.items()],
        metric_rows,
    )


class _Rows:
    """Rows to write in a few ``executemany`` calls rather than five statements a run."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.count = 0
        self.dropped: list[tuple[str]] = []
        self.runs: list[tuple[Any, ...]] = []
        self.params: list[tuple[str, str, str]] = []
        self.tags: list[tuple[str, str, str]] = []
        self.metrics: list[tuple[Any, ...]] = []
        self.broken: list[tuple[str, bytes, str]] = []

    def drop(self, run_id: str) -> None:
        self.dropped.append((run_id,))

    def add_ref(self, store: Store, run_id: str, sha: str) -> None:
        """The rows of the run record at ``sha`` (or of why it is broken)."""
        from gitml.format.readers import parse_run
        from gitml.format.run_text import canonical_run

        ref = layout.run_ref(run_id)
        try:
            try:
                data = store.snapshot(sha).read(layout.RUN_FILE)
            except NotFound as exc:
                raise InvalidRecord(ref, layout.RUN_FILE, "(document)", str(exc)) from None
            # Read by its layout when gitml wrote it (13 us); else the model says (59 us).
            plain = None if data is None else canonical_run(data)
            if plain is None or plain["id"] != run_id:
                plain = parse_run(data, run_id).to_plain()
        except InvalidRecord as exc:
            self.count += 1
            self.broken.append((run_id, bytes.fromhex(sha), _text(str(exc))))
            return
        self.add_read(read_run(sha, plain))

    def add_read(self, read: ReadRun) -> None:
        """The rows of a run record read and validated, or of why SQLite cannot hold it."""
        self.count += 1
        if isinstance(read.rows, Unstorable):
            error = InvalidRecord(layout.run_ref(read.run_id), layout.RUN_FILE, *read.rows)
            self.broken.append((read.run_id, bytes.fromhex(read.commit), _text(str(error))))
            return
        self.add_rows(read.rows)

    def add_rows(self, rows: RunRows) -> None:
        run, params, tags, metrics = rows
        self.runs.append(run)
        self.params += params
        self.tags += tags
        self.metrics += metrics

    def write(self, conn: sqlite3.Connection) -> None:
        for table in ("params", "tags", "metrics"):
            conn.executemany(
                f"DELETE FROM {table} WHERE run = (SELECT n FROM runs WHERE run_id = ?)",
                self.dropped,
            )
        for table in ("runs", "broken"):
            conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", self.dropped)
        # Each run's number, given here rather than looked up for each of its rows.
        (last,) = conn.execute("SELECT coalesce(max(n), 0) FROM runs").fetchone()
        number = {row[0]: last + i for i, row in enumerate(self.runs, 1)}
        conn.executemany(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(number[row[0]], *row) for row in self.runs],
        )
        for table, rows in (("params", self.params), ("tags", self.tags)):
            conn.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?)",
                [(number[run_id], key, value) for run_id, key, value in rows],
            )
        conn.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
            [(number[row[0]], *row[1:]) for row in self.metrics],
        )
        conn.executemany("INSERT INTO broken VALUES (?, ?, ?)", self.broken)
        self.clear()


def memory_index() -> sqlite3.Connection:
    """An empty in-memory database with the index's tables, for the search SQL over
    a run held in memory (``hold_run``) rather than read from the refs."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _create(conn)
    return conn


def hold_run(conn: sqlite3.Connection, run: Run) -> tuple[str, str] | None:
    """Make ``run`` the one run in ``conn``, indexed as a refresh indexes it; (field, why)
    instead when the index could not hold it, as for a refresh."""
    for table in ("runs", "params", "tags", "metrics"):
        conn.execute(f"DELETE FROM {table}")
    read = read_run("", run.to_plain())
    if isinstance(read.rows, Unstorable):
        return read.rows.field, read.rows.why
    rows = _Rows()
    rows.add_rows(read.rows)
    rows.write(conn)
    return None


# What an SQLite INTEGER holds: from _INT64_MIN up to, not including, _INT64_END.
_INT64_MIN, _INT64_END = -(2**63), 2**63


def _unstorable(value: Any, field: str) -> tuple[str, str] | None:
    """The first value in a record SQLite cannot hold, as (field, why), or None.

    A record's integers are unbounded and its strings may hold lone
    surrogates (from YAML's "\\ud800" escapes); sqlite3 refuses both, and a
    refused row would fail the whole refresh with it.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if _INT64_MIN <= value < _INT64_END:
            return None
        return field, "the number does not fit in 64 bits, so it cannot be indexed"
    if isinstance(value, str):
        if _text(value) == value:
            return None
        return field, "the text holds a lone surrogate (not UTF-8), so it cannot be indexed"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{field}.{_text(key)}" if field else _text(key)
            if _text(key) != key:
                return where, "the key holds a lone surrogate (not UTF-8), so it cannot be indexed"
            found = _unstorable(item, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{field}[{i}]")
            if found is not None:
                return found
    return None


def _storable(rows: RunRows) -> bool:
    """Whether SQLite takes every value of ``rows``: integers within 64 bits, and text
    that UTF-8 can encode (no lone surrogate). The rows themselves are looked at, not
    the record: 3 us a run, where the record's JSON took 6 us to write and search."""
    row, params, tags, metrics = rows
    texts: list[str] = []
    for value in itertools.chain(row, *params, *tags, *metrics):
        kind = type(value)
        if kind is str:
            texts.append(value)
        elif kind is int and not _INT64_MIN <= value < _INT64_END:
            return False
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str) -> str:
    """``value`` with anything UTF-8 cannot encode (lone surrogates) written as escapes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


_TABLES = ("runs", "params", "tags", "metrics", "loose", "broken", "meta")
_SECONDARY_INDEXES = (
    "runs_by_start",
    "runs_by_experiment",
    "runs_by_parent",
    "params_by_value",
    "tags_by_value",
    "metrics_by_value",
)
_MAX_VARIABLES = 30000  # SQLite allows 32,766 "?"s in one statement (3.32 and later)
BULK_FROM = 1000  # runs added at once before _bulk defers the secondary indexes
PARALLEL_FROM = 4000  # runs to read before worker processes pay for their start
CHUNK = 500


def _read_runs(store: Store, todo: list[tuple[str, str]]) -> Iterator[_Rows]:
    """Rows for each (run id, commit), in chunks; read in parallel when there are many.

    Reading and validating a record is most of a rebuild (0.7 ms a run), and
    it parallelises: forked workers each open the repository again and only
    read it; this process writes what they return. Not "spawn": that runs the
    user's ``__main__`` again in each worker (a training script without an
    ``if __name__ == "__main__"`` guard would start training). A forked worker
    ends with ``os._exit`` and never touches the inherited SQLite connection.
    """
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    workers = min(os.cpu_count() or 1, 8)
    if len(todo) < PARALLEL_FROM or workers < 2:
        for chunk in chunks:
            yield _read_chunk(chunk, store)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_open_worker_store,
        initargs=(os.fspath(store.root),),
    ) as pool:
        yield from pool.map(_read_chunk, chunks)


_worker_store: Store | None = None


def _open_worker_store(path: str) -> None:
    global _worker_store
    _worker_store = Store(path)


def _read_chunk(chunk: list[tuple[str, str]], store: Store | None = None) -> _Rows:
    rows = _Rows()
    source = store or _worker_store
    assert source is not None
    for run_id, sha in chunk:
        rows.add_ref(source, run_id, sha)
    return rows


def _prepare(conn: sqlite3.Connection) -> None:
    _wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
    version = _meta(conn, "schema")
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    # A new file, an older layout, or indexes an interrupted rebuild dropped.
    if version != SCHEMA_VERSION or not indexes.issuperset(_SECONDARY_INDEXES):
        with _write(conn):
            if version not in (None, SCHEMA_VERSION):  # start again from the refs
                for table in _TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
            _create(conn)
            _set_meta(conn, "schema", SCHEMA_VERSION)


def _wal(conn: sqlite3.Connection, wait: float = 30.0) -> None:
    """Put the file in WAL mode (a no-op once it is).

    Switching a new file's journal needs the file to itself, and SQLite answers
    "database is locked" at once, without its busy wait, while other
    connections are opening the same new file (threads of a server's first
    searches): retried until ``wait`` seconds have passed.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is no (longer a whole) database.

    Damage (SQLITE_CORRUPT, SQLITE_NOTADB) raises DatabaseError itself or, when
    a garbled index breaks a constraint, IntegrityError; a locked file or a full
    disk raise OperationalError and must not cost the index.
    """
    return type(exc) in (sqlite3.DatabaseError, sqlite3.IntegrityError)


@contextmanager
def _bulk(conn: sqlite3.Connection, adding: int) -> Iterator[None]:
    """Inside a write: when ``adding`` runs outnumber those indexed (a first pull), the
    secondary indexes are dropped while the rows go in and built once at the end, as
    a rebuild does, which is about twice as fast as keeping them up to date."""
    present = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    if adding < BULK_FROM or adding <= present:
        yield
        return
    for name in _SECONDARY_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    yield
    _create(conn)


def _create(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")  # one writer at a time; readers go on (WAL)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # no meta table: a new file
        return None
    return None if row is None else str(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def _marks(n: int) -> str:
    return ",".join("?" * n) or "NULL"


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _packed_text(packed: PackedStat) -> str:
    return " ".join(map(str, packed))

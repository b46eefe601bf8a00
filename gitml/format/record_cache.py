"""Records already validated, kept by the hash of their bytes, for commands that must start fast.

A record is an immutable blob, so whether its bytes pass the record models
never changes while the models stay the same. ``gitml stage show`` must
answer within 200 ms, and importing pydantic and building the models takes
over 100 ms of that; so it asks this cache for the validated JSON form of
each record and imports the models only for bytes it has never validated.
Writers add what they write, so the next read after a change is a hit too.

The cache is ``.git/gitml/validated.sqlite``. An entry is keyed by the kind of
record, the hash of its bytes and a fingerprint of the code that validated it
(gitml's version and the record models' file), so an upgrade or an edit of
the models validates again. It is only a cache: a damaged file is replaced,
and if it cannot be opened or written every read validates, as it would
without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitml._version import __version__

FILENAME = "validated.sqlite"
_MODELS = Path(__file__).with_name("records.py")


def _fingerprint() -> str:
    try:
        stat = _MODELS.stat()
    except OSError:  # a zipped install: the version alone
        return __version__
    return f"{__version__}:{stat.st_size}:{stat.st_mtime_ns}"


class ValidatedRecords:
    """The validated records of one repository (``folder`` is its ``.git/gitml``)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILENAME
        self._conn: sqlite3.Connection | None = None
        self._broken = False
        # One connection for every thread (a server's Stages serves its thread pool),
        # used by one at a time.
        self._lock = threading.Lock()
        self._code = _fingerprint()

    def validated(self, kind: str, data: bytes | None, validate: Callable[[], Any]) -> Any:
        """The JSON form of ``data`` (None: the record is absent) as ``validate()`` returns it.

        ``validate`` runs only when these bytes were never validated; whatever
        it raises (the record's precise error) passes through and nothing is kept.
        """
        key = self._key(kind, data)
        found = self._get(key)
        if found is not None:
            return json.loads(found)
        value = validate()
        self._put(key, value)
        return value

    def remember(self, kind: str, data: bytes, value: Any) -> None:
        """Keep ``value`` as the validated form of ``data``: a writer that built it from a model."""
        self._put(self._key(kind, data), value)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _key(self, kind: str, data: bytes | None) -> str:
        digest = "absent" if data is None else hashlib.sha256(data).hexdigest()
        return f"{self._code}\t{kind}\t{digest}"

    def _get(self, key: str) -> str | None:
        with self._lock:
            conn = self._open()
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT value FROM validated WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
        return None if row is None else str(row[0])

    def _put(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"))
        with self._lock:
            conn = self._open()
            if conn is None:
                return
            # A locked or read-only cache keeps nothing: the next read validates again.
            with contextlib.suppress(sqlite3.Error):
                conn.execute(
                    "INSERT OR REPLACE INTO validated (key, value) VALUES (?, ?)", (key, text)
                )

    def _open(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._broken:
            return self._conn
        for attempt in range(2):
            try:
                self._conn = self._connect()
                return self._conn
            except sqlite3.OperationalError:  # locked, read-only, no such folder
                break
            except sqlite3.DatabaseError:  # not a database (any more): only a cache, rebuild it
                if attempt == 0:
                    discard(self.path)
            except OSError:
                break
        self._broken = True
        return None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=2.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
            conn.execute(
                "CREATE TABLE IF NOT EXISTS validated "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS code (fingerprint TEXT NOT NULL)")
            row = conn.execute("SELECT fingerprint FROM code").fetchone()
            if row is None or row[0] != self._code:
                # Entries of other code can never be hits here again: drop them once,
                # so that upgrades do not pile up (keys still carry the fingerprint,
                # for a process of the old code that is still running).
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("DELETE FROM validated")
                    conn.execute("DELETE FROM code")
                    conn.execute("INSERT INTO code VALUES (?)", (self._code,))
        except BaseException:
            conn.close()
            raise
        return conn


def discard(path: Path) -> None:
    """Remove the SQLite database at ``path`` with its write-ahead log and shared memory:
    derived data that is damaged is started again."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

"""The per-run buffer behind ``log_metric``, ``log_param`` and ``set_tag``.

A logging call validates, appends one record to the process's journal segment
(so ``kill -9`` loses nothing) and to an in-memory buffer, and returns. The
buffer becomes one commit when it holds ``flush_points`` points, when
``flush_interval`` seconds have passed (checked on each call and by a
background thread), before any read of the run in this process, and at the end
of the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gitml.errors import Conflict
from gitml.format.records import Run
from gitml.git.store import BlobRef, Snapshot, deferred_signals
from gitml.tracking import journal, metrics, validation

# (step, timestamp, value): the latest point of a key, compared as MLflow does.
Latest = tuple[int, int, float]

Files = dict[str, bytes | BlobRef | None]


@dataclass(frozen=True)
class RunEdit:
    """A change to a run besides buffered data: status, lifecycle, artifacts.

    ``apply`` mutates the run record parsed from the current tip (None for a
    run whose first commit this is) and returns the other files to write; it
    runs again if another writer wins the race.
    """

    describe: str
    apply: Callable[[Run, Snapshot | None], Files]


Commit = Callable[[journal.Entries, dict[str, Latest], list[str], RunEdit | None], None]


class Rejected(Conflict):
    """The commit landed without values the run contradicts (a param that cannot change).

    The only error after which a flush's journal segments are done with: any
    other means nothing was committed, and they are kept for the next try.
    """


class RunWriter:
    def __init__(
        self,
        run_id: str,
        journal_dir: Path,
        params: dict[str, str],
        commit: Commit,
        *,
        flush_points: int,
        flush_interval: float,
    ) -> None:
        self.run_id = run_id
        self._journal_dir = journal_dir
        self._commit = commit
        self._flush_points = flush_points
        self._flush_interval = flush_interval
        self.known_params = dict(params)
        self._lock = threading.Lock()  # guards the buffer; held for microseconds
        self._flush_lock = threading.Lock()  # one flush at a time
        self._pending = journal.Entries()
        self._latest: dict[str, Latest] = {}
        self._points = 0
        self._since: float | None = None
        self._segment: journal.Segment | None = None
        self._in_flight: list[journal.Segment] = []
        self.deferred: BaseException | None = None

    # -- logging ---------------------------------------------------------

    def metric(self, key: str, value: float, step: int, timestamp: int) -> None:
        ln = metrics.line(step, timestamp, value)
        record = journal.metric_record(key, ln)
        with self._lock:
            self._journal().write(record)
            lines = self._pending.metrics.get(key)
            if lines is None:
                self._pending.metrics[key] = [ln]
            else:
                lines.append(ln)
            point = (step, timestamp, value)
            current = self._latest.get(key)
            if current is None or point >= current:
                self._latest[key] = point
            self._points += 1
            due = self._due()
        if due:
            self.flush()

    def params(self, values: dict[str, str]) -> None:
        with self._lock:
            for key, value in values.items():
                known = self.known_params.get(key, self._pending.params.get(key))
                if known is not None and known != value:
                    raise Conflict(
                        f"param '{key}' of run {self.run_id} is already '{known}'; "
                        f"a param cannot change (got '{value}'). Log it under another key"
                    )
            self._journal().write(b"".join(journal.param_record(k, v) for k, v in values.items()))
            self._pending.params.update(values)
            due = self._due()
        if due:
            self.flush()

    def create(self, record: bytes, payload: dict[str, object]) -> None:
        """Journal a new run; its first commit comes with the first flush."""
        with self._lock:
            self._journal().write(record)
            self._pending.create = payload

    def tags(self, values: dict[str, str]) -> None:
        with self._lock:
            self._journal().write(b"".join(journal.tag_record(k, v) for k, v in values.items()))
            self._pending.tags.update(values)
            due = self._due()
        if due:
            self.flush()

    def _journal(self) -> journal.Segment:
        if self._segment is None:
            self._segment = journal.Segment.create(self._journal_dir, self.run_id)
            self._since = time.monotonic()
        return self._segment

    def _due(self) -> bool:
        return self._points >= self._flush_points or (
            self._since is not None and time.monotonic() - self._since >= self._flush_interval
        )

    def overdue(self) -> bool:
        with self._lock:
            return self._since is not None and self._due()

    # -- committing --------------------------------------------------------

    def flush(self, edit: RunEdit | None = None) -> None:
        """Commit everything buffered so far, with ``edit`` in the same commit.

        A no-op when nothing is buffered and there is no edit.
        """
        # Signals wait until the buffer, the journal and the ref agree again.
        with deferred_signals(), self._flush_lock:
            with self._lock:
                if self._segment is None and not self._in_flight and edit is None:
                    return
                batch, self._pending = self._pending, journal.Entries()
                latest, self._latest = self._latest, {}
                if self._segment is not None:
                    self._in_flight.append(self._segment)
                self._segment, self._since, self._points = None, None, 0
                segments = list(self._in_flight)
            try:
                self._commit(batch, latest, [s.name for s in segments], edit)
            except Rejected:
                # The commit landed without the rejected values; nothing to redo.
                self._finish(segments, batch)
                raise
            except BaseException:
                # Nothing landed (a busy ref, a full disk): the values go back
                # to the buffer and the segments stay until a commit has them.
                with self._lock:
                    batch.extend(self._pending)
                    self._pending = batch
                    for key, point in latest.items():
                        current = self._latest.get(key)
                        if current is None or point >= current:
                            self._latest[key] = point
                raise
            self._finish(segments, batch)

    def _finish(self, segments: list[journal.Segment], batch: journal.Entries) -> None:
        for segment in segments:
            segment.discard()
        with self._lock:
            self._in_flight = [s for s in self._in_flight if s not in segments]
            for key, value in batch.params.items():
                self.known_params.setdefault(key, value)

    def abandon(self) -> None:
        """In a forked child: let go of the parent's journal descriptors, keep its files."""
        for segment in [*self._in_flight, *([self._segment] if self._segment else [])]:
            segment.close()
        self._segment, self._in_flight = None, []
        self._pending, self._latest = journal.Entries(), {}

    def raise_deferred(self) -> None:
        """Raise an error a background flush met, on the caller's next call."""
        error, self.deferred = self.deferred, None
        if error is not None:
            raise error


def checked_metric(key: str, value: object, step: object, timestamp: object) -> Latest:
    """Validate one point; the hot path of ``log_metric``."""
    validation.key("metric", key)
    return (
        validation.step(key, step),
        validation.timestamp(key, timestamp),
        validation.metric_value(key, value),
    )

"""Reconciler fixtures: distinguishable registered versions and hand-made declarations."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import pytest

import gitml
import gitml.pyfunc
from gitml.format.layout import declaration_path
from gitml.format.records import ModelVersion, StageDeclaration
from gitml.git.store import Change, Snapshot, Store
from gitml.registry.declarations import branch
from gitml.registry.versions import Registry
from gitml.serving.reconcile import Source
from gitml.serving.scoring import Predictor

from .git import IDENTITY, git, init_repo
from .models import AddOffset, FailsOnPredict

EXAMPLE = np.array([[1.0, 2.0]])
STAGE = "production"  # the stage the reconciler follows in the tests


def offset_run(client: gitml.Client, offset: float) -> str:
    """A finished run holding an ``AddOffset`` model (with an input example) under ``model``."""
    run = client.create_run(run_name=f"offset-{offset:g}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "offset.txt"
        path.write_text(repr(offset))
        gitml.pyfunc.log_model(
            AddOffset(),
            "model",
            artifacts={"offset": str(path)},
            input_example=EXAMPLE,
            run_id=run.id,
        )
    client.set_terminated(run.id)
    return run.id


def broken_run(client: gitml.Client) -> str:
    """A finished run holding a model that fails its input example (the health check)."""
    run = client.create_run(run_name="broken")
    gitml.pyfunc.log_model(FailsOnPredict(), "model", input_example=EXAMPLE, run_id=run.id)
    client.set_terminated(run.id)
    return run.id


def register_offsets(client: gitml.Client, name: str, offsets: list[float]) -> Registry:
    """Register one ``AddOffset`` version of ``name`` per offset (version n has offsets[n-1])."""
    registry = Registry(client)
    for offset in offsets:
        registry.register(f"runs:/{offset_run(client, offset)}/model", name)
    return registry


def write_declaration(store: Store, stage: str, model: str, text: str | None) -> str:
    """Commit ``text`` as ``models/<model>.yaml`` on the stage branch as is (None deletes it)."""

    def edit(snap: Snapshot | None) -> Change:
        data = None if text is None else text.encode()
        return Change({declaration_path(model): data})

    tip = store.update(branch(stage), edit, f"hand-edited {model}\n\nGitml-Stage: {stage}")
    assert tip is not None
    return tip


def push(work: Path, remote: Path) -> float:
    """Push the records and stage branches with the real git; returns when the push
    finished (``time.monotonic()``)."""
    git(
        work, "push", "-q", str(remote),
        "refs/gitml/*:refs/gitml/*", "refs/heads/gitml/*:refs/heads/gitml/*",
    )  # fmt: skip
    return time.monotonic()


class CountingLoader:
    """A stand-in loader: each version predicts its own number; counts the loads."""

    def __init__(self) -> None:
        self.loaded: list[tuple[str, int]] = []

    def __call__(self, version: ModelVersion, repo: Path) -> Predictor:
        self.loaded.append((version.name, version.version))
        return VersionNumber(version.version)


class VersionNumber:
    """A predictor answering its version number for every row."""

    def __init__(self, number: int) -> None:
        self.number = number

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return [self.number] * len(data)


class CountingSource(Source):
    """The local repository, counting how often the reconciler looks at it."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.refreshes = 0
        self.fetches = 0

    def refresh(self, stage: str) -> None:
        self.refreshes += 1

    def fetch_for(self, declared: dict[str, StageDeclaration]) -> None:
        self.fetches += 1


@contextmanager
def pinned_git(home: Path) -> Iterator[pytest.MonkeyPatch]:
    """The pinned git environment of tests/conftest.py, for session-scoped fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in IDENTITY.items():
            mp.setenv(key, value)
        mp.setenv("HOME", str(home))
        mp.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        yield mp


def build_repository(path: Path, home: Path) -> Path:
    """A work repository with ``adder`` v1-v3 (AddOffset 1, 2, 3), v4 (fails its input
    example) and ``other`` v1 (offset 1), for tests to copy."""
    with pinned_git(home) as mp:
        init_repo(path)
        mp.chdir(path)
        client = gitml.Client(identity="Ada <ada@example.com>")
        registry = Registry(client)
        runs = [offset_run(client, offset) for offset in (1, 2, 3)]
        for run_id in runs:
            registry.register(f"runs:/{run_id}/model", "adder")
        registry.register(f"runs:/{broken_run(client)}/model", "adder")
        registry.register(f"runs:/{runs[0]}/model", "other")
        client.close()
    return path


@dataclass(frozen=True)
class Answer:
    """One request of the load generator: when, to whom, and who answered."""

    sent: float  # time.monotonic()
    received: float
    target: str
    status: int  # 0: no response at all (connection error, timeout)
    version: str | None  # X-Gitml-Model-Version
    revision: str | None  # X-Gitml-Revision
    predictions: Any = None
    error: str | None = None


class LoadGenerator:
    """Threads posting ``body`` to ``/invocations`` continuously, one keep-alive client each.

    Bounded: every request has a timeout, and ``stop()`` (or ``deadline``
    seconds) ends the threads.
    """

    def __init__(
        self, targets: list[str], body: bytes, *, deadline: float = 120, pause: float = 0.002
    ) -> None:
        self.targets = targets
        self.body = body
        self.pause = pause  # between requests: leaves the servers' reconcile loops some CPU
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._until = time.monotonic() + deadline
        self._threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True) for t in targets
        ]

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self, target: str) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx2.Client(timeout=5) as http:
            while not self._stop.is_set() and time.monotonic() < self._until:
                sent = time.monotonic()
                try:
                    r = http.post(f"{target}/invocations", content=self.body, headers=headers)
                except httpx2.HTTPError as exc:
                    answer = Answer(sent, time.monotonic(), target, 0, None, None, error=repr(exc))
                else:
                    answer = Answer(
                        sent,
                        time.monotonic(),
                        target,
                        r.status_code,
                        r.headers.get("x-gitml-model-version"),
                        r.headers.get("x-gitml-revision"),
                        r.json().get("predictions") if r.status_code == 200 else None,
                        None if r.status_code == 200 else r.text,
                    )
                self.answers.append(answer)  # list.append is atomic
                self._stop.wait(self.pause)

"""Seeded repositories and a served app for the web UI's tests (``tests/ui``)."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gitml
from gitml.registry.declarations import branch
from gitml.registry.stages import Stages
from gitml.registry.versions import Registry
from gitml.tracking import fluent
from testing.git import IDENTITY, FixedClock, git, init_repo
from testing.serving import uvicorn_server

CHROMIUM = os.environ.get("GITML_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The machine's network is closed: these flags keep Chromium from slow failed connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ADA = "Ada <ada@example.com>"


def png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (RGB, a gradient), written without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 60, y * 80, 200))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@contextmanager
def inside(path: Path) -> Iterator[None]:
    """``path`` as the working directory, with git's identity pinned, for module fixtures."""
    before = Path.cwd()
    saved = {k: os.environ.get(k) for k in IDENTITY}
    os.environ.update(IDENTITY)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        fluent.set_tracking_uri(None)


def seed(path: Path) -> dict[str, Any]:
    """Experiments, runs with metric histories, nested and dirty runs, artifacts, a model
    with versions on stages (a canary, and a proposal merged as a pull request would)."""
    from testing.registry import log_iris_run

    init_repo(path)
    clock = FixedClock(1_764_000_000.0)
    out: dict[str, Any] = {}
    with inside(path):
        client = gitml.Client(clock=clock, identity=ADA)
        churn = client.create_experiment("churn")
        client.create_experiment("vision")
        runs = []
        for i, (lr, depth, opt) in enumerate(
            [
                ("0.1", "3", "adam"),
                ("0.01", "5", "sgd"),
                ("0.001", "8", "adam"),
                ("0.05", "4", "sgd"),
            ]
        ):
            run = client.create_run(churn, run_name=f"train-{i}")
            for key, value in {"lr": lr, "depth": depth, "optimizer": opt}.items():
                client.log_param(run.id, key, value)
            for step in range(20):
                # A step every 1.5 s of wall-clock time, for the charts' time axes.
                at = int(clock.now * 1000) + 1500 * step
                client.log_metric(run.id, "loss", 1.0 / (step + 1 + i), at, step)
                client.log_metric(run.id, "accuracy", 0.5 + 0.02 * step + 0.01 * i, at, step)
            client.set_tag(run.id, "team", "growth" if i % 2 else "risk")
            clock.advance(60)
            client.set_terminated(run.id, "FAILED" if i == 3 else "FINISHED")
            runs.append(run.id)
        out["runs"] = runs
        parent = client.create_run(churn, run_name="sweep")
        client.log_param(parent.id, "grid", "lr")
        children = []
        for j in range(2):
            child = client.create_run(churn, run_name=f"trial-{j}", parent_run_id=parent.id)
            client.log_metric(child.id, "loss", 0.3 - 0.1 * j, step=0)
            client.log_param(child.id, "lr", str(0.2 * (j + 1)))
            client.set_terminated(child.id)
            children.append(child.id)
        clock.advance(60)
        client.set_terminated(parent.id)
        out["parent"], out["children"] = parent.id, children
        # A run of uncommitted code: its source is a snapshot of the dirty tree.
        (path / "train.py").write_text("print('training, edited')\n")
        dirty = client.create_run(churn, run_name="dirty-edit")
        client.log_metric(dirty.id, "loss", 0.42)
        client.log_bytes(dirty.id, png(), "plots/curve.png")
        client.log_text(dirty.id, "hello from the run\nsecond line\n", "notes.txt")
        client.log_dict(dirty.id, {"threshold": 0.5, "classes": ["a", "b"]}, "config.json")
        client.log_dict(dirty.id, {"depth": 5, "layers": [1, 2]}, "params.yaml")
        client.log_text(dirty.id, "id,score\nr1,0.9\nr2,0.7\n", "data/scores.csv")
        client.set_terminated(dirty.id)
        git(path, "checkout", "--", "train.py")
        out["dirty"] = dirty.id
        # A deleted run: hidden from the default view, listed under the lifecycle filter.
        deleted = client.create_run(churn, run_name="discarded")
        client.log_param(deleted.id, "lr", "0.5")
        client.log_metric(deleted.id, "loss", 0.9)
        client.set_terminated(deleted.id, "KILLED")
        client.delete_run(deleted.id)
        out["deleted"] = deleted.id
        out["code_commit"] = git(path, "rev-parse", "HEAD").strip()
        # The model: three versions of one run's classifier, promoted through stages.
        registry = Registry(client)
        model_run, _, _ = log_iris_run(client, metrics={"accuracy": 0.97})
        out["model_run"] = model_run
        for _ in range(3):
            registry.register(f"runs:/{model_run}/model", "churn-model")
        stages = Stages(registry, client.config)
        stages.assign("churn-model", 1, "production", message="first release")
        clock.advance(3600)
        stages.assign("churn-model", 2, "production", weight=10, message="canary v2")
        clock.advance(3600)
        proposal = stages.assign("churn-model", 3, "production", propose=True, message="try v3")
        tip = client.store.tip(branch("production")) or ""
        tree = git(path, "rev-parse", f"{proposal.commit}^{{tree}}").strip()
        clock.advance(3600)
        at = f"@{int(clock.now)} +0000"
        message = "Merge pull #7 from gitml/proposals/production/churn-model-v3"
        merge = git(
            path,
            "commit-tree",
            tree,
            *("-p", tip, "-p", proposal.commit, "-m", message),
            env={**os.environ, "GIT_AUTHOR_DATE": at, "GIT_COMMITTER_DATE": at},
        ).strip()
        git(path, "update-ref", "refs/heads/gitml/production", merge, tip)
        out["merge"] = merge
        clock.advance(3600)
        stages.assign("churn-model", 2, "staging")
        client.close()
    out["experiment"] = churn
    return out


@contextmanager
def served(repo: Path) -> Iterator[str]:
    """The tracking server with its UI over ``repo``, on 127.0.0.1; yields the base URL."""
    from gitml.server.tracking_app import ServerSettings, create_app

    with inside(repo):
        app = create_app(ServerSettings(repo=repo))
    with uvicorn_server(app) as url:
        yield url

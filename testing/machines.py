"""Machines sharing one bare remote: clones with their own identity and home.

Each machine's ``gitml`` work runs in its own repository; push and pull go
through gitml.sharing.remote with the real ``git``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import gitml
from gitml.git.store import Store
from gitml.sharing import remote as sharing
from gitml.tracking import fluent
from testing.git import git, git_env, init_repo


@dataclass
class Machine:
    name: str
    path: Path
    env: dict[str, str]

    @property
    def identity(self) -> str:
        return f"{self.name} <{self.name.lower()}@example.com>"

    def git(self, *args: str) -> str:
        return git(self.path, *args, env=self.env)

    def refs(self, prefix: str = "refs/gitml/") -> dict[str, str]:
        return refs_of(self.path, prefix, self.env)


def refs_of(repo: Path, prefix: str, env: dict[str, str] | None = None) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", prefix, env=env)
    return dict(line.split(" ", 1) for line in out.splitlines())


def new_machine(tmp: Path, name: str, remote: Path, *, clone: bool) -> Machine:
    home = tmp / f"home-{name}"
    home.mkdir()
    env = git_env(home)
    env.update(
        GIT_AUTHOR_NAME=name,
        GIT_COMMITTER_NAME=name,
        GIT_AUTHOR_EMAIL=f"{name.lower()}@example.com",
        GIT_COMMITTER_EMAIL=f"{name.lower()}@example.com",
    )
    path = tmp / name.lower()
    if clone:
        git(tmp, "clone", "-q", str(remote), str(path), env=env)
    else:
        init_repo(path)
        git(path, "remote", "add", "origin", str(remote), env=env)
        git(path, "push", "-q", "origin", "main", env=env)
    return Machine(name, path, env)


@contextlib.contextmanager
def on(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> Iterator[gitml.Client]:
    """A client working in ``machine``'s repository (the fluent API too, for log_model)."""
    monkeypatch.chdir(machine.path)
    fluent.set_tracking_uri(str(machine.path))
    client = gitml.Client(str(machine.path), identity=machine.identity)
    try:
        yield client
    finally:
        client.close()
        fluent.set_tracking_uri(None)


def log_run(client: gitml.Client, name: str) -> str:
    run = client.create_run(run_name=name)
    client.log_metric(run.id, "acc", 0.5)
    client.set_terminated(run.id)
    return run.id


def store(machine: Machine) -> Store:
    return Store(machine.path, identity=machine.identity)


def push(machine: Machine) -> sharing.PushReport:
    s = store(machine)
    try:
        return sharing.push(s, "origin")
    finally:
        s.close()


def pull(machine: Machine) -> sharing.PullReport:
    s = store(machine)
    try:
        return sharing.pull(s, "origin")
    finally:
        s.close()

"""Server-side enforcement: the ``pre-receive`` hook and its installer.

git runs ``pre-receive`` once per push, after the objects arrive and before
any ref moves, with ``<old> <new> <ref>`` lines on stdin; a non-zero exit
rejects the whole push and git relays the hook's stderr to the pushing
client as ``remote: …`` lines.

The pushed objects are in a quarantine folder (``GIT_OBJECT_DIRECTORY``)
until the hook accepts them, with the repository's own objects as an
alternate. dulwich's ``Repo`` reads neither variable when opened by path
(checked with dulwich 1.2.21 and git 2.39), so ``open_repository`` opens the
store with the quarantine folder as an alternate; nothing is written.

The hook checks refs under ``refs/heads/gitml/`` and ``refs/gitml/`` as they
will be after the push (a ref pushed alongside, such as a new model version
and the stage declaring it, counts): the full content of each new tip
(schemas, references, weights), and for stage branches the policy of every
new commit with that commit's author. Proposal branches are checked against
their stage without ``authors`` (who merges is checked when the merge is
pushed). Deleting a stage branch or a model's ref is refused. The policy is
the ``.gitml.yaml`` of the repository's HEAD commit as it was before the push,
so a push cannot loosen the rules it is checked against.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitml.errors import InvalidInput, InvalidRecord, NotARepository
from gitml.format.layout import GITML, MODELS, PROPOSALS, STAGES
from gitml.format.records import Config
from gitml.git.store import Store
from gitml.registry.validate import Validator, load_config

ZERO = "0" * 40
HOOK_MARKER = "# gitml pre-receive hook"


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def deleted(self) -> bool:
        return self.new == ZERO

    @property
    def created(self) -> bool:
        return self.old == ZERO


def parse_updates(text: str) -> list[RefUpdate]:
    """The ``<old> <new> <ref>`` lines git gives ``pre-receive`` on stdin."""
    updates = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise InvalidInput(f"pre-receive: expected '<old> <new> <ref>', got {line!r}")
        updates.append(RefUpdate(*parts))
    return updates


def open_repository(env: Mapping[str, str]) -> Store:
    """The repository a hook runs in, able to read the objects of the push it judges."""
    quarantine = env.get("GIT_OBJECT_DIRECTORY") or env.get("GIT_QUARANTINE_PATH")
    # git keeps a push's objects in a quarantine folder until the hook accepts
    # them; dulwich reads them only when told of the folder as an alternate.
    extra = [os.path.abspath(quarantine)] if quarantine else []
    return Store(Path(env.get("GIT_DIR", ".")).resolve(), alternates=extra)


def is_gitml_ref(ref: str) -> bool:
    return ref.startswith((STAGES, GITML))


def pre_receive(
    store: Store, updates: list[RefUpdate], config: Config | None = None
) -> list[InvalidRecord]:
    """Every problem the push ``updates`` would bring into ``store`` (empty: accept)."""
    config = config if config is not None else load_config(store)
    pending = {u.ref: (None if u.deleted else u.new) for u in updates}

    def tip(ref: str) -> str | None:
        return pending[ref] if ref in pending else store.tip(ref)

    validator = Validator(store, config, tip=tip)
    problems: list[InvalidRecord] = []
    for update in updates:
        if not is_gitml_ref(update.ref):
            continue
        is_stage = update.ref.startswith(STAGES) and not update.ref.startswith(PROPOSALS)
        if update.deleted:
            if is_stage or update.ref.startswith(MODELS):
                what = "a stage branch" if is_stage else "a registered model's ref"
                reason = f"deleting {what} is not allowed (the record of what was served goes too)"
                problems.append(InvalidRecord(update.ref, "(ref)", "(ref)", reason))
            continue
        found = validator.ref(update.ref, update.new, policy=not is_stage)
        problems.extend(found)
        if is_stage and not found:
            stage = update.ref[len(STAGES) :]
            commits = new_first_parents(store, update.old, update.new)
            problems.extend(validator.stage_commits(update.ref, stage, commits))
    return problems


def new_first_parents(store: Store, old: str, new: str) -> list[str]:
    """The first-parent commits from ``new`` back to ``old``'s history, oldest first."""
    known: set[str] = set()
    if old != ZERO and store.has_object(old):
        known = {info.sha for info in store.history(old, stop=lambda _: False)}
    fresh = [info.sha for info in store.history(new, stop=lambda info: info.sha in known)]
    return fresh[::-1]


def run_pre_receive(stdin: str, env: Mapping[str, str]) -> list[str]:
    """The lines to print for a push (empty: accept): what the CLI command does."""
    store = open_repository(env)
    try:
        updates = parse_updates(stdin)
        problems = pre_receive(store, updates, load_config(store))
    finally:
        store.close()
    if not problems:
        return []
    refs = sorted({p.where.split("@", 1)[0] for p in problems})
    head = f"gitml: push rejected: {len(problems)} problem(s) in {', '.join(refs)}"
    return [head, *(str(p) for p in problems)]


# -- installing -------------------------------------------------------------------------


def hook_script(python: str = sys.executable) -> str:
    # ``-c`` rather than ``-m gitml``: the package has no __main__ module.
    code = "import sys; from gitml.cli import main; sys.exit(main())"
    return (
        "#!/bin/sh\n"
        f"{HOOK_MARKER}: installed by 'gitml hook install --server'.\n"
        "# Rejects pushes to gitml/* branches and refs/gitml/* that break a record's\n"
        "# schema, its references or the promotion policy in HEAD's .gitml.yaml.\n"
        f"exec {shlex.quote(python)} -c {shlex.quote(code)} hook pre-receive\n"
    )


def install_server_hook(repo: Path, *, force: bool = False, python: str = sys.executable) -> Path:
    """Write ``hooks/pre-receive`` into the repository at ``repo`` (bare, or its .git)."""
    gitdir = repo / ".git" if (repo / ".git").is_dir() else repo
    if not ((gitdir / "objects").is_dir() and (gitdir / "refs").is_dir()):
        raise NotARepository(f"{repo} is not a Git repository")
    path = gitdir / "hooks" / "pre-receive"
    if path.exists() and not force:
        current = path.read_text(errors="replace")
        if HOOK_MARKER not in current:
            raise InvalidInput(
                f"{path} already exists and is not gitml's; call 'gitml hook pre-receive' "
                "from it (pass on the same stdin), or pass --force to replace it"
            )
    path.parent.mkdir(exist_ok=True)
    path.write_text(hook_script(python))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path

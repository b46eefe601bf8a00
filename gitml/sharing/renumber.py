"""Renumbering the versions two machines registered offline, before a push.

Two clones that both registered versions of one model hold diverged model
refs. ``rebase_model`` re-creates the local commits made after the merge base
on top of the remote's tip: new versions get the next free numbers (same
record except ``version``; the run commit stays the second parent), edits of a
version or of ``model.yaml`` apply when the remote did not change the same
file (else a :class:`~gitml.errors.Conflict`). ``renumber_stages`` then
rewrites the unpushed commits of local stage branches and proposal branches
that declare a renumbered version, so no local ref keeps pointing at a number
that now means another machine's model; a proposal named ``<model>-v5`` is
renamed ``<model>-v6``. Commit messages (``version 5``, ``churn v5``, the
``Gitml-Version`` trailer) follow the new numbers.

Nothing here moves a ref: the caller gets the new tips and moves them by
compare-and-swap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from gitml.errors import Conflict
from gitml.format import layout
from gitml.format.layout import PROPOSALS
from gitml.format.layout import STAGES as BRANCHES
from gitml.git import command
from gitml.git.store import Store

# Model name -> local version number -> the number it gets.
Renumbering = dict[str, dict[int, int]]

VERSION_FILE = re.compile(r"^versions/([1-9][0-9]*)\.yaml\Z")


def _version_bytes(data: bytes, number: int, where: str, path: str) -> bytes:
    from gitml.format.records import ModelVersion, parse

    version = parse(ModelVersion, data, where=where, path=path)
    return version.model_copy(update={"version": number}).to_yaml()


def _highest(store: Store, commit: str) -> int:
    numbers = [
        int(m.group(1))
        for entry, _, _ in store.snapshot(commit).listdir(layout.VERSIONS_DIR)
        if (m := VERSION_FILE.match(f"versions/{entry}"))
    ]
    return max(numbers, default=0)


def _chain(store: Store, tip: str, stop: Callable[[str], bool]) -> list[str]:
    """First-parent commits from ``tip`` until ``stop`` (excluded) or the root; oldest first."""
    chain = []
    sha: str | None = tip
    while sha is not None and not stop(sha):
        chain.append(sha)
        parents = store.commit_info(sha).parents
        sha = parents[0] if parents else None
    return chain[::-1]


def _files(store: Store, commit: str | None) -> dict[str, str]:
    """``model.yaml`` and ``versions/*.yaml`` of a model commit, path to blob sha."""
    if commit is None:
        return {}
    snap = store.snapshot(commit)
    out = {
        f"versions/{e}": sha for e, is_dir, sha in snap.listdir(layout.VERSIONS_DIR) if not is_dir
    }
    top = snap.lookup(layout.MODEL_FILE)
    if top is not None:
        out[layout.MODEL_FILE] = top
    return out


def renumber_message(message: str, mapping: dict[int, int], model: str) -> str:
    """A commit message with each renumbered version's new number."""

    def number(m: re.Match[str]) -> str:
        old = int(m.group(2))
        return f"{m.group(1)}{mapping.get(old, old)}"

    def trailer(value: str) -> str:
        return str(mapping.get(int(value), value)) if value.isdigit() else value

    message = re.sub(r"(\bversion )(\d+)\b", number, message)
    message = re.sub(rf"(\b{re.escape(model)} v)(\d+)\b", number, message)
    return layout.map_trailer(message, layout.VERSION, trailer)


def rebase_model(store: Store, ref: str, mine: str, theirs: str) -> tuple[str, dict[int, int]]:
    """Re-create the commits of model ref ``ref`` after the merge base of ``mine`` and
    ``theirs`` on top of ``theirs``.

    Returns the new tip and the renumbering (local number to new number).
    """
    name = ref.rpartition("/")[2]  # model names hold no "/"
    found = command.run(["merge-base", mine, theirs], cwd=store.root, ok=(0, 1)).stdout.strip()
    base = found or None
    tip = theirs
    mapping: dict[int, int] = {}
    for sha in _chain(store, mine, lambda c: c == base):
        info = store.commit_info(sha)
        parent = info.parents[0] if info.parents else None
        before, after = _files(store, parent), _files(store, sha)
        current = store.snapshot(tip)
        files: dict[str, bytes | None] = {}
        here: dict[int, int] = {}
        for path in sorted(before.keys() | after.keys()):
            if before.get(path) == after.get(path):
                continue
            new_data = store.read_blob(after[path]) if path in after else None
            old_data = store.read_blob(before[path]) if path in before else None
            match = VERSION_FILE.match(path)
            if match and old_data is None and new_data is not None:  # a registration
                number = _highest(store, tip) + 1 + len(here)
                mapping[int(match.group(1))] = here[int(match.group(1))] = number
                files[f"versions/{number}.yaml"] = _version_bytes(new_data, number, ref, path)
                continue
            if path == layout.MODEL_FILE and old_data is None and current.read(path) is not None:
                continue  # the model was created on both sides: the remote's record stays
            target = path
            wanted, expected = new_data, old_data
            if match:
                number = mapping.get(int(match.group(1)), int(match.group(1)))
                target = f"versions/{number}.yaml"
                wanted = None if new_data is None else _version_bytes(new_data, number, ref, path)
                expected = None if old_data is None else _version_bytes(old_data, number, ref, path)
            now = current.read(target)
            if now == wanted:
                continue
            if now != expected:
                raise Conflict(
                    f"model {name}: {target} was changed both here and on the remote; "
                    "'gitml pull', make your change again, and push"
                )
            files[target] = wanted
        merges = info.parents[1:]
        if not files and not merges:
            continue
        message = renumber_message(info.message.rstrip("\n"), mapping, name)
        tip = store.write_commit(current.tree, files, (tip, *merges), message)
    return tip, mapping


def renumber_stages(
    store: Store, renumbered: Renumbering, remote: Mapping[str, str]
) -> dict[str, tuple[str | None, str | None]]:
    """Rewrite the unpushed stage and proposal commits that declare a renumbered version.

    ``remote`` is the remote's refs. Unpushed: not reachable from any of the
    remote's stage branches. Returns ref -> (old tip, new tip): a renamed
    proposal's old name gets None as new tip, its new name None as old tip.
    """
    from gitml.format.records import StageDeclaration, parse

    remote_tips = [sha for ref, sha in remote.items() if ref.startswith(BRANCHES)]
    listed = command.run(["rev-list", *remote_tips], cwd=store.root) if remote_tips else None
    pushed = set(listed.stdout.split()) if listed is not None else set()
    rewritten: dict[str, str] = {}
    moves: dict[str, tuple[str | None, str | None]] = {}
    refs = store.refs(BRANCHES.rstrip("/"))
    # Stage branches before proposals: a proposal starts on a stage commit.
    for ref in sorted(refs, key=lambda r: (r.startswith(PROPOSALS), r)):
        mine = refs[ref]
        for sha in _chain(store, mine, lambda c: c in pushed or c in rewritten):
            info = store.commit_info(sha)
            snap = store.snapshot(sha)
            files: dict[str, bytes | None] = {}
            message = info.message.rstrip("\n")
            for model, mapping in renumbered.items():
                path = f"models/{model}.yaml"
                data = snap.read(path)
                if data is not None:
                    declared = parse(StageDeclaration, data, where=ref, path=path)
                    versions = [
                        v.model_copy(update={"version": mapping.get(v.version, v.version)})
                        for v in declared.versions
                    ]
                    if versions != declared.versions:
                        new = declared.model_copy(update={"versions": versions})
                        files[path] = new.to_yaml()
                if layout.has_trailer(message, layout.MODEL, model):
                    message = renumber_message(message, mapping, model)
            parents = tuple(rewritten.get(p, p) for p in info.parents)
            if files or parents != info.parents or message != info.message.rstrip("\n"):
                rewritten[sha] = store.write_commit(snap.tree, files, parents, message)
        new_tip = rewritten.get(mine, mine)
        if new_tip == mine:
            continue
        target = _renamed_proposal(ref, renumbered)
        if target != ref:
            if store.tip(target) is not None or target in remote:
                raise Conflict(f"cannot rename {_branch(ref)}: {_branch(target)} exists")
            moves[target] = (None, new_tip)
            moves[ref] = (mine, None)
        else:
            moves[ref] = (mine, new_tip)
    return moves


def _renamed_proposal(ref: str, renumbered: Renumbering) -> str:
    if not ref.startswith(PROPOSALS):
        return ref
    head, _, leaf = ref.rpartition("/")
    for model, mapping in renumbered.items():
        match = re.fullmatch(rf"{re.escape(model)}-v(\d+)", leaf)
        if match and int(match.group(1)) in mapping:
            return f"{head}/{model}-v{mapping[int(match.group(1))]}"
    return ref


def _branch(ref: str) -> str:
    return "branch " + ref[len("refs/heads/") :]

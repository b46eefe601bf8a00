"""Stages as branches: ``gitml/<stage>`` declares which versions each model serves.

A stage branch's tree has one ``models/<name>.yaml`` per model (a
``StageDeclaration``). Branches, not custom refs, because only branches can
be the target of a pull request: a proposal is a branch
``gitml/proposals/<stage>/<model>-v<n>`` on top of the stage, merged by
review; a direct assignment is a commit on the stage itself. Every change is
a commit with ``Gitml-Stage``/``Gitml-Model``/``Gitml-Version`` trailers, so
history, audit and rollback are walks over the branch's first parents.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gitml.errors import Conflict, InvalidInput, NotFound
from gitml.format import layout
from gitml.format.layout import DECLARATIONS_DIR as MODELS_DIR
from gitml.format.layout import declaration_path
from gitml.format.record_cache import ValidatedRecords
from gitml.format.records import Config, ServedVersion, StageDeclaration
from gitml.git.store import FILE_MODE, TREE_MODE, BlobRef, Change, CommitInfo, Snapshot
from gitml.registry.declarations import (
    branch,
    check_name,
    commit_at,
    declaration_at,
    declaration_kind,
    declarations,
    describe_declaration,
    read_declaration,
    stage_tip,
)
from gitml.registry.policy import PolicyCheck

if TYPE_CHECKING:
    from gitml.registry.versions import Registry

# pre-commit runs the hooks that the checked-out branch's own config names, and
# refuses every commit on a branch without one; a stage branch holds only
# declarations, so gitml gives it a config when it creates it.
PRE_COMMIT_CONFIG = ".pre-commit-config.yaml"
PRE_COMMIT_HOOKS = b"""\
# Written by gitml with this stage branch: pre-commit checks each changed
# models/<name>.yaml with the gitml installed here (gitml validate).
repos:
  - repo: local
    hooks:
      - id: gitml-validate
        name: gitml validate
        entry: gitml validate
        language: system
        files: ^models/[^/]+\\.yaml$
"""


class PolicyRefusal(InvalidInput):
    """The project's promotion policy refuses a direct change of a stage."""


def check_stage(stage: str, config: Config | None = None) -> str:
    """``stage`` if it can name a stage (and, given ``config``, is one of its stages)."""
    return check_name(stage, None if config is None else config.stages)


@dataclass(frozen=True)
class StageChange:
    """One commit of a stage branch, as far as one model is concerned."""

    commit: str
    time: int
    author: str
    subject: str
    model: str
    before: StageDeclaration | None
    after: StageDeclaration | None
    merge: str | None = None  # the merged proposal's commit, for a merge
    # Versions a rollback restored that the archive stage no longer lists.
    unarchived: tuple[int, ...] = ()

    @property
    def summary(self) -> str:
        return f"{describe_declaration(self.before)} -> {describe_declaration(self.after)}"


@dataclass
class Assignment:
    """What ``Stages.assign`` did: the commit and, when archiving, the archive's."""

    stage: str
    model: str
    declaration: StageDeclaration
    commit: str
    ref: str
    archived: list[int] = field(default_factory=list)
    unarchived: list[int] = field(default_factory=list)  # taken off the archive stage


class Stages:
    """Stage branches of the repository a registry writes to."""

    def __init__(self, registry: Registry, config: Config) -> None:
        self.registry = registry
        self.store = registry.store
        self.config = config
        self._validated = ValidatedRecords(self.store.data_dir)

    def _declaring(self, model: str, declared: StageDeclaration) -> Change:
        """The change that writes ``declared``; the cache of validated records learns
        its bytes, so that ``gitml stage show`` reads them without pydantic."""
        data = declared.to_yaml()
        self._validated.remember(declaration_kind(model), data, declared.model_dump(mode="json"))
        return Change({declaration_path(model): data})

    def assign(
        self,
        model: str,
        version: int | str,
        stage: str,
        *,
        weight: int = 100,
        archive_existing: bool = False,
        message: str | None = None,
        propose: bool = False,
    ) -> Assignment:
        """Declare ``version`` of ``model`` on ``stage`` (or propose it as a branch).

        ``weight`` below 100 makes a canary: the version already declared
        keeps the rest of the traffic.
        """
        check_stage(stage, self.config)
        target = self.registry.get_version(model, version)
        if target.status == "DELETED":
            raise InvalidInput(f"model '{model}' version {target.version} was deleted")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            raise InvalidInput(f"weight must be an integer from 1 to 100, got {weight!r}")
        number = target.version
        replaced: list[int] = []
        self._catch_up(stage)

        def declare(current: StageDeclaration | None) -> StageDeclaration:
            if weight == 100:
                replaced[:] = [v.version for v in current.versions] if current else []
                served = [ServedVersion(version=number, weight=100, digest=target.digest)]
            else:
                others = [v for v in (current.versions if current else []) if v.version != number]
                if len(others) != 1:
                    raise InvalidInput(
                        f"a canary of {weight}% needs exactly one other version of '{model}' "
                        f"on '{stage}' to keep the rest; it declares "
                        f"{describe_declaration(current)}"
                    )
                served = [
                    others[0].model_copy(update={"weight": 100 - weight}),
                    ServedVersion(version=number, weight=weight, digest=target.digest),
                ]
            replaced[:] = [v for v in replaced if v != number]
            return StageDeclaration(model=model, versions=served, note=message)

        share = "" if weight == 100 else f" ({weight}%)"
        text = _message(f"{stage}: {model} v{number}{share}", stage, model, number, message)
        made: list[StageDeclaration] = []
        if propose:
            ref = layout.proposal_branch(stage, model, number)
            # Refuse a bad proposal before creating the stage branch it would be based on.
            if self.store.tip(ref) is None:
                declare(read_declaration(self.store, stage, model))
            base = self._stage_tip(stage)

            def edit(snap: Snapshot | None) -> Change | None:
                if snap is not None:
                    raise Conflict(
                        f"proposal branch {ref[len('refs/heads/') :]} already exists; "
                        "merge or delete it first"
                    )
                stage_tree = self.store.snapshot(base)
                made[:] = [declare(declaration_at(stage_tree, stage, model))]
                change = self._declaring(model, made[0])
                # A new ref's first commit starts from an empty tree; merging the
                # proposal must leave the stage's other files as they are.
                files = {**_entries(stage_tree), **change.files}
                return replace(change, files=files, root_parents=(base,))

        else:
            ref = branch(stage)

            def edit(snap: Snapshot | None) -> Change | None:
                current = declaration_at(snap, stage, model) if snap is not None else None
                made[:] = [declare(current)]
                if current == made[0]:
                    return None
                # A direct change must pass the policy; a proposal is made as asked,
                # and `gitml validate` and the pre-receive hook report what it breaks.
                author = self.store.identity.decode("utf-8", "replace")
                broken = PolicyCheck(self.store, self.config).change(
                    stage, model, current, made[0], author
                )
                if broken:
                    reasons = "; ".join(p.reason for p in broken)
                    raise PolicyRefusal(f"stage '{stage}' refuses {model} v{number}: {reasons}")
                return _creating(snap, self._declaring(model, made[0]))

        commit = self.store.update(ref, edit, text) or ""
        result = Assignment(stage, model, made[0], commit, ref)
        if archive_existing and not propose and replaced and self.config.archive_stage:
            self._archive(model, replaced)
            result.archived = replaced
        if not propose:
            result.unarchived = self._unarchive(stage, model, [number])
        return result

    def _catch_up(self, stage: str) -> str | None:
        """Fast-forward ``gitml/<stage>`` to its remote-tracking branch when that is ahead
        or the only one (after ``git clone`` or ``git fetch``), as a reader sees the stage;
        returns the branch's tip. A change written on the stale branch could never be pushed.
        """
        tip = stage_tip(self.store, stage)
        if tip.remote is not None and tip.commit is not None:
            text = f"gitml: {branch(stage)[len('refs/heads/') :]} from {tip.name}"
            self.store.set_ref(branch(stage), tip.commit, tip.local, text)
        return self.store.tip(branch(stage))

    def _stage_tip(self, stage: str) -> str:
        """The stage branch's tip, creating the branch (one empty commit) if needed."""
        tip = self.store.update(
            branch(stage),
            lambda snap: None if snap is not None else _creating(snap, Change({})),
            layout.message(f"create stage {stage}", [(layout.STAGE, stage)]),
        )
        assert tip is not None
        return tip

    def archive(self, model: str, versions: list[int]) -> None:
        """List ``versions`` of ``model`` on the archive stage, as MLflow 2's "Archived" does."""
        if self.config.archive_stage is None:
            raise InvalidInput("this project has no archive stage ('archive_stage' in .gitml.yaml)")
        self._archive(model, versions)

    def _archive(self, model: str, versions: list[int]) -> None:
        stage = self.config.archive_stage
        assert stage is not None
        self._catch_up(stage)
        digests = {n: self.registry.get_version(model, n).digest for n in versions}

        def edit(snap: Snapshot | None) -> Change | None:
            current = declaration_at(snap, stage, model) if snap is not None else None
            listed = [v.version for v in current.versions] if current else []
            added = [n for n in versions if n not in listed]
            if not added:
                return None
            served = [*(current.versions if current else [])]
            served += [ServedVersion(version=n, weight=0, digest=digests[n]) for n in added]
            new = StageDeclaration(model=model, versions=served, note=None)
            return _creating(snap, self._declaring(model, new))

        names = ", ".join(f"v{n}" for n in versions)
        text = _message(f"{stage}: {model} {names}", stage, model, None, None)
        self.store.update(branch(stage), edit, text)

    def _unarchive(self, stage: str, model: str, versions: list[int]) -> list[int]:
        """Take ``versions``, declared again on ``stage``, off the archive stage.

        A version is either retired or declared: listing it on both would show
        it as archived and in production at once.
        """
        archive = self.config.archive_stage
        if archive is None or stage == archive or self._catch_up(archive) is None:
            return []
        taken: list[int] = []

        def edit(snap: Snapshot | None) -> Change | None:
            current = declaration_at(snap, archive, model) if snap is not None else None
            listed = current.versions if current else []
            taken[:] = [v.version for v in listed if v.version in versions]
            if not taken:
                return None
            kept = [v for v in listed if v.version not in versions]
            if not kept:
                return Change({declaration_path(model): None})
            return self._declaring(model, StageDeclaration(model=model, versions=kept, note=None))

        names = ", ".join(f"v{n}" for n in versions)
        text = _message(
            f"{archive}: {model} {names} declared on {stage} again", archive, model, None, None
        )
        self.store.update(branch(archive), edit, text)
        return taken

    def remove(self, model: str, stage: str, *, message: str | None = None) -> str:
        """Stop declaring ``model`` on ``stage`` (the reconciler stops serving it)."""
        check_stage(stage, self.config)
        self._catch_up(stage)

        def edit(snap: Snapshot | None) -> Change | None:
            if snap is None or declaration_at(snap, stage, model) is None:
                raise NotFound(f"stage '{stage}' declares no version of '{model}'")
            return Change({declaration_path(model): None})

        text = _message(f"{stage}: remove {model}", stage, model, None, message)
        return self.store.update(branch(stage), edit, text) or ""

    def rollback(self, stage: str, model: str, *, message: str | None = None) -> StageChange:
        """A new commit restoring what ``stage`` declared for ``model`` before its last change."""
        check_stage(stage, self.config)
        self._catch_up(stage)
        last = next(self.history(stage, model=model), None)
        if last is None:
            raise NotFound(f"stage '{stage}' has never declared '{model}'")
        if last.before is None:
            raise InvalidInput(
                f"stage '{stage}' declared '{model}' for the first time in {last.commit[:12]}; "
                f"there is nothing to roll back to (use 'gitml stage remove' to stop serving it)"
            )
        previous = last.before.model_copy(update={"note": message})

        def edit(snap: Snapshot | None) -> Change | None:
            # Other models may have changed since; only this model's declaration must not.
            if snap is None or declaration_at(snap, stage, model) != last.after:
                raise Conflict(f"'{model}' on '{stage}' changed while rolling back; try again")
            return self._declaring(model, previous)

        text = _message(
            f"{stage}: roll back {model} to {describe_declaration(previous)}",
            stage,
            model,
            None,
            message,
            extra=[(layout.ROLLBACK_OF, last.commit)],
        )
        commit = self.store.update(branch(stage), edit, text) or ""
        info = self.store.commit_info(commit)
        restored = [v.version for v in previous.versions]
        return StageChange(
            commit,
            info.time,
            info.author,
            _subject(info),
            model,
            last.after,
            previous,
            unarchived=tuple(self._unarchive(stage, model, restored)),
        )

    def show(self, stage: str, *, at: int | None = None) -> dict[str, StageDeclaration]:
        """Every declaration on ``stage``: now, or at unix time ``at``."""
        check_stage(stage, self.config)
        if at is None:
            return declarations(self.store, stage)
        commit = self.commit_at(stage, at)
        return {} if commit is None else declarations(self.store, stage, commit)

    def commit_at(self, stage: str, at: int) -> str | None:
        """The stage branch's commit in effect at unix time ``at`` (None: none yet)."""
        return commit_at(self.store, stage, at)

    def history(self, stage: str, *, model: str | None = None) -> Iterator[StageChange]:
        """Changes to ``stage``, newest first, one per model a commit changed."""
        check_stage(stage)
        tip = stage_tip(self.store, stage).commit
        if tip is None:
            return
        for info in self.store.history(tip, stop=lambda _: False):
            after = self.store.snapshot(info.sha)
            before = self.store.snapshot(info.parents[0]) if info.parents else None
            merge = info.parents[1] if len(info.parents) > 1 else None
            for name in _changed_models(after, before):
                if model is not None and name != model:
                    continue
                yield StageChange(
                    commit=info.sha,
                    time=info.time,
                    author=info.author,
                    subject=_subject(info),
                    model=name,
                    before=declaration_at(before, stage, name) if before else None,
                    after=declaration_at(after, stage, name),
                    merge=merge,
                )


def _creating(snap: Snapshot | None, change: Change) -> Change:
    """``change``, with the pre-commit config when it creates the stage branch (no ``snap``)."""
    if snap is not None:
        return change
    return replace(change, files={PRE_COMMIT_CONFIG: PRE_COMMIT_HOOKS, **change.files})


def _entries(snap: Snapshot) -> dict[str, bytes | BlobRef | None]:
    """Every file of a stage branch's tree, as a change writing each again."""
    files: dict[str, bytes | BlobRef | None] = {}
    for name, is_dir, sha in snap.listdir(""):
        if name == MODELS_DIR and is_dir:
            for entry, nested, entry_sha in snap.listdir(MODELS_DIR):
                mode = TREE_MODE if nested else FILE_MODE
                files[f"{MODELS_DIR}/{entry}"] = BlobRef(entry_sha, mode)
        else:
            files[name] = BlobRef(sha, TREE_MODE if is_dir else FILE_MODE)
    return files


def _changed_models(after: Snapshot, before: Snapshot | None) -> list[str]:
    new = {n: sha for n, is_dir, sha in after.listdir(MODELS_DIR) if not is_dir}
    old = {n: sha for n, is_dir, sha in before.listdir(MODELS_DIR) if not is_dir} if before else {}
    names = {n for n in new.keys() | old.keys() if new.get(n) != old.get(n)}
    return sorted(m for n in names if (m := layout.declared_model(n)) is not None)


def _subject(info: CommitInfo) -> str:
    return info.message.split("\n", 1)[0]


def _message(
    subject: str,
    stage: str,
    model: str,
    version: int | None,
    note: str | None,
    *,
    extra: list[layout.Trailer] | None = None,
) -> str:
    trailers = [(layout.STAGE, stage), (layout.MODEL, model)]
    if version is not None:
        trailers.append((layout.VERSION, str(version)))
    return layout.message(subject, [*trailers, *(extra or [])], note)

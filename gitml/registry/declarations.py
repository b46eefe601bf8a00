"""Stage declarations: what a stage branch's ``models/<model>.yaml`` says, read and described.

Every helper about one declaration lives here, below ``versions`` and
``stages`` (its path is ``layout``'s): its parsing and reading (``parse_declaration``,
``declaration_at``, ``read_declaration``, ``declarations``), its JSON form
through the cache (``declared``), and what it means (``describe_declaration``,
``served_summary``, ``primary_version``, ``weights_problem``,
``other_version``); and which commit a reader takes for a stage
(``stage_tips``: the local branch, or a remote-tracking one that is ahead of
it or alone). ``stages`` holds everything that writes stage branches.

``gitml stage show`` must answer within 200 ms with a thousand versions and
stage changes; importing pydantic and building the record models takes over
100 ms of that. So this module imports the record models only when it parses,
and ``declared`` reads declarations through the cache of validated records
(``record_cache``): only bytes never validated before import the models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import TYPE_CHECKING, Any

from gitml.errors import InvalidInput
from gitml.format import layout
from gitml.format.layout import declaration_path, stage_branch

if TYPE_CHECKING:
    from gitml.format.record_cache import ValidatedRecords
    from gitml.format.records import Config, ModelVersion, ServedVersion, StageDeclaration
    from gitml.git.store import Snapshot, Store

_STAGE = re.compile(layout.STAGE_NAME)
branch = stage_branch  # the stage's branch, by the name the registry and the CLI use


def check_name(stage: str, stages: Sequence[str] | None = None) -> str:
    """``stage`` if it can name a stage (and, given the project's ``stages``, is one of them)."""
    if not isinstance(stage, str) or not _STAGE.match(stage) or stage == layout.RESERVED_STAGE:
        raise InvalidInput(
            f"stage {stage!r}: use lowercase letters, digits, '_' and '-', starting with a letter"
        )
    if stages is not None and stage not in stages:
        raise InvalidInput(
            f"stage '{stage}' is not one of this project's stages "
            f"({', '.join(stages)}); list it under 'stages' in .gitml.yaml"
        )
    return stage


@dataclass(frozen=True)
class StageTip:
    """The commit a reader takes for a stage, and the ref it read it from.

    ``git clone`` and ``git fetch`` bring a remote's stage branches as
    ``refs/remotes/<remote>/gitml/<stage>`` only; a reader that looked at the
    local branch alone would answer "declares no model", or an old answer.
    """

    stage: str
    ref: str  # refs/heads/gitml/<stage>, or refs/remotes/<remote>/gitml/<stage>
    commit: str | None
    local: str | None  # the local branch's commit, whichever was read
    remote: str | None = None  # the remote whose tracking branch was read

    @property
    def name(self) -> str:
        """The ref as git shows it: ``gitml/production`` or ``origin/gitml/production``."""
        return self.ref.removeprefix("refs/heads/").removeprefix(_TRACKING)


_TRACKING = "refs/remotes/"


def stage_tips(store: Store, stages: Iterable[str]) -> dict[str, StageTip]:
    """Where to read each of ``stages``: the local branch ``gitml/<stage>`` unless it is
    missing or behind a remote-tracking one (``origin``'s first, then by remote name)."""
    tracking = store.refs(_TRACKING)
    found = {}
    for stage in stages:
        local = store.tip(branch(stage))
        found[stage] = StageTip(stage, branch(stage), local, local)
        for remote in tracking_remotes(store, stage, tracking):
            name = _tracking_branch(remote, stage)
            theirs = tracking[name]
            if theirs != local and (local is None or _behind(store, local, theirs)):
                found[stage] = StageTip(stage, name, theirs, local, remote)
                break
    return found


def tracking_remotes(
    store: Store, stage: str, tracking: Mapping[str, str] | None = None
) -> list[str]:
    """The remotes whose ``gitml/<stage>`` was fetched here, ``origin`` first, then by name."""
    refs = store.refs(_TRACKING) if tracking is None else tracking
    suffix = _tracking_branch("", stage)[len(_TRACKING) :]
    remotes = [name[len(_TRACKING) : -len(suffix)] for name in refs if name.endswith(suffix)]
    return sorted((r for r in remotes if r), key=lambda remote: (remote != "origin", remote))


def _tracking_branch(remote: str, stage: str) -> str:
    return layout.remote_stages(remote) + stage


def stage_tip(store: Store, stage: str) -> StageTip:
    """Where to read ``stage`` (see ``stage_tips``)."""
    return stage_tips(store, [stage])[stage]


def tracked_stages(store: Store) -> list[str]:
    """Every stage with a branch here or a remote-tracking branch, by name."""
    names = set()
    for ref in store.refs(layout.STAGES):
        names.add(ref[len(layout.STAGES) :])
    suffix = layout.remote_stages("")[len(_TRACKING) :]  # "/gitml/"
    for ref in store.refs(_TRACKING):
        _, found, stage = ref[len(_TRACKING) :].partition(suffix)
        if found:
            names.add(stage)
    return sorted(n for n in names if _STAGE.match(n) and n != layout.RESERVED_STAGE)


def _behind(store: Store, mine: str, theirs: str) -> bool:
    """Whether ``mine`` is on the first-parent history of ``theirs`` (which is then ahead).

    Both histories are walked in step, so a local branch a few commits ahead of
    its remote-tracking one costs a few commits, not the whole history.
    """
    ours = (info.sha for info in store.history(mine, stop=lambda _: False))
    remote = (info.sha for info in store.history(theirs, stop=lambda _: False))
    for their, our in zip_longest(remote, ours):
        if their == mine:
            return True
        if our == theirs:
            return False
    return False


def commit_at(store: Store, stage: str, at: int) -> str | None:
    """The commit of ``gitml/<stage>`` in effect at unix time ``at`` (None: none yet)."""
    tip = stage_tip(store, stage).commit
    if tip is None:
        return None
    for info in store.history(tip, stop=lambda _: False):
        if info.time <= at:
            return info.sha
    return None


def parse_declaration(data: bytes, stage: str, model: str) -> StageDeclaration:
    """``models/<model>.yaml`` of ``stage``: a valid declaration of that very model."""
    # The record models cost ``stage show`` its budget: imported only to parse.
    from gitml.format import readers

    return readers.parse_declaration(data, stage, model)


def declaration_at(snap: Snapshot, stage: str, model: str) -> StageDeclaration | None:
    """What the stage branch's tree ``snap`` declares for ``model`` (None: nothing)."""
    data = snap.read(declaration_path(model))
    return None if data is None else parse_declaration(data, stage, model)


def read_declaration(store: Store, stage: str, model: str) -> StageDeclaration | None:
    """What ``stage`` declares for ``model`` now (None: it serves no version of it)."""
    tip = stage_tip(store, stage).commit
    return None if tip is None else declaration_at(store.snapshot(tip), stage, model)


def declarations(store: Store, stage: str, at: str | None = None) -> dict[str, StageDeclaration]:
    """Every model's declaration on ``stage`` (at commit ``at``, default the tip)."""
    commit = at or stage_tip(store, stage).commit
    if commit is None:
        return {}
    files = declaration_files(store.snapshot(commit))
    return {model: parse_declaration(data, stage, model) for model, data in files}


def describe_declaration(declared: StageDeclaration | None) -> str:
    """``nothing``, ``v3``, or ``v3 (90%) + v4 (10%)`` for a canary."""
    return served_summary(None if declared is None else declared.model_dump())


def primary_version(declared: StageDeclaration | None) -> int | None:
    """The version taking most of the traffic (of a canary's two, the newer on a tie)."""
    if declared is None or not declared.versions:
        return None
    return max(declared.versions, key=lambda v: (v.weight, v.version)).version


def other_version(
    stage: str, model: str, served: ServedVersion, version: ModelVersion
) -> str | None:
    """Why ``version``, numbered as ``served`` says, is not the version ``served`` declares.

    The number alone may have come to mean another version: two clones
    registered it offline, and a plain ``git push`` carried the stage branch
    without the model ref git refused. A declaration without a digest means
    its number (None).
    """
    if served.digest is None or version.digest == served.digest:
        return None
    declarer = f"gitml/{stage}" if stage else "this declaration"
    named = f"{model} v{served.version}"
    return (
        f"{declarer} declares {named} (digest {_short_digest(served.digest)}), but {named} "
        f"here is the version registered from run {version.run_id} "
        f"(digest {_short_digest(version.digest)}): this declaration would serve a different model"
    )


def _short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits: enough to tell two models apart in a message."""
    return digest[: len("sha256:") + 12]


def weights_problem(declared: StageDeclaration, stage: str, config: Config) -> str | None:
    """Why the weights of ``declared`` are wrong for ``stage``, or None."""
    numbers = [v.version for v in declared.versions]
    if len(set(numbers)) != len(numbers):
        return "a version is listed twice"
    if stage == config.archive_stage:
        return None  # the archive serves nothing; it only lists
    total = sum(v.weight for v in declared.versions)
    if total != 100:
        return f"weights sum to {total}, not 100"
    return None


def served_summary(declared: Mapping[str, Any] | None) -> str:
    """``nothing``, ``v3``, or ``v3 (90%) + v4 (10%)`` for a canary (a declaration's JSON form)."""
    if declared is None:
        return "nothing"
    versions = declared["versions"]
    if len(versions) == 1:
        return f"v{versions[0]['version']}"
    return " + ".join(f"v{v['version']} ({v['weight']}%)" for v in versions)


def declaration_files(snap: Snapshot) -> Iterator[tuple[str, bytes]]:
    """``(model, bytes)`` of every ``models/<model>.yaml`` in a stage branch's tree."""
    for name, is_dir, _ in snap.listdir(layout.DECLARATIONS_DIR):
        model = None if is_dir else layout.declared_model(name)
        if model is None:
            continue
        data = snap.read(declaration_path(model))
        if data is not None:
            yield model, data


def declared(
    store: Store, stage: str, commit: str, cache: ValidatedRecords
) -> dict[str, dict[str, Any]]:
    """Every model's declaration at ``commit`` of ``stage``, in its JSON form.

    The same declarations, and the same errors for a bad one, as
    ``declarations``; a declaration validated before costs no pydantic.
    """
    found = {}
    for model, data in declaration_files(store.snapshot(commit)):

        def validate(model: str = model, data: bytes = data) -> dict[str, Any]:
            return parse_declaration(data, stage, model).model_dump(mode="json")

        found[model] = cache.validated(declaration_kind(model), data, validate)
    return found


def declaration_kind(model: str) -> str:
    """The cache's kind for ``models/<model>.yaml``: the file name is part of what is checked."""
    return f"stage-declaration:{model}"

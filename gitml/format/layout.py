"""The repository format's names: refs, paths inside a record's tree, commit trailers.

Every other module spells a ref, a file of a record or a trailer through
these names, so the format is stated here once. Nothing here imports
pydantic or dulwich: ``gitml stage show`` and ``import gitml`` stay fast.

- A run is ``refs/gitml/runs/<id>``: ``run.yaml``, ``artifacts.yaml`` (the
  manifest), ``artifacts/<path>`` (files kept in Git) and ``metrics/``.
- An experiment is ``refs/gitml/experiments/<id>``: ``experiment.yaml``.
- A registered model is ``refs/gitml/models/<name>``: ``model.yaml`` and
  ``versions/<n>.yaml``.
- A stage is the branch ``gitml/<stage>`` (``refs/heads/gitml/<stage>``):
  ``models/<model>.yaml`` per model it declares; a proposal is the branch
  ``gitml/proposals/<stage>/<model>-v<n>``.
- Every commit gitml writes ends with ``Gitml-<Key>: <value>`` trailers
  (``Gitml-Run``, ``Gitml-Model``, ``Gitml-Version``, ...) saying what it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# -- refs ----------------------------------------------------------------------

GITML = "refs/gitml/"
RUNS = GITML + "runs/"
EXPERIMENTS = GITML + "experiments/"
MODELS = GITML + "models/"
STAGES = "refs/heads/gitml/"
PROPOSALS = STAGES + "proposals/"
# Where a push keeps the tips it plans (per remote).
OUTGOING = "refs/gitml-outgoing/"
# Where the reconciler fetches a remote's stage branch and what it declares.
RECONCILE_SCRATCH = "refs/gitml-reconcile/"

# A stage names a branch under gitml/, where "proposals" is taken.
STAGE_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
RESERVED_STAGE = "proposals"
# A branch name, with or without refs/heads/: a proposal's (stage, the rest), a stage's.
PROPOSAL_BRANCH_NAME = re.compile(r"^(?:refs/heads/)?gitml/proposals/([^/]+)/(.+)\Z")
STAGE_BRANCH_NAME = re.compile(r"^(?:refs/heads/)?gitml/([^/]+)\Z")
# A proposal branch named in free text, such as the subject of the merge of a proposal.
PROPOSAL_IN_TEXT = re.compile(r"gitml/proposals/[A-Za-z0-9_./-]*[A-Za-z0-9_-]")
_PROPOSAL = re.compile(rf"^{re.escape(PROPOSALS)}([^/]+)/(.+)-v([1-9][0-9]*)$")


def run_ref(run_id: str) -> str:
    return RUNS + run_id


def experiment_ref(experiment_id: str) -> str:
    return EXPERIMENTS + experiment_id


def model_ref(name: str) -> str:
    return MODELS + name


def stage_branch(stage: str) -> str:
    return STAGES + stage


def proposal_branch(stage: str, model: str, version: int) -> str:
    return f"{PROPOSALS}{stage}/{model}-v{version}"


def proposed(ref: str) -> tuple[str, str, int] | None:
    """The stage, model and version a ``proposal_branch`` ref proposes (None: not one)."""
    match = _PROPOSAL.match(ref)
    return None if match is None else (match[1], match[2], int(match[3]))


def remote_stages(remote: str) -> str:
    """Where ``git fetch <remote>`` keeps the remote's stage branches (``origin/gitml/...``)."""
    return f"refs/remotes/{remote}/gitml/"


def name_under(prefix: str, ref: str) -> str | None:
    """What ``ref`` names under ``prefix`` (``run_id`` of ``refs/gitml/runs/<run_id>``)."""
    return ref[len(prefix) :] if ref.startswith(prefix) else None


# -- files of a record's tree ----------------------------------------------------------

RUN_FILE = "run.yaml"
MANIFEST_FILE = "artifacts.yaml"
ARTIFACTS_DIR = "artifacts"
METRICS_DIR = "metrics"
EXPERIMENT_FILE = "experiment.yaml"
MODEL_FILE = "model.yaml"
VERSIONS_DIR = "versions"
DECLARATIONS_DIR = "models"
YAML = ".yaml"
_VERSION_FILE = re.compile(r"^versions/([1-9][0-9]*)\.yaml\Z")


def artifact_path(path: str) -> str:
    """Where an artifact kept in Git sits in its run's tree."""
    return f"{ARTIFACTS_DIR}/{path}"


def version_path(version: int) -> str:
    return f"{VERSIONS_DIR}/{version}{YAML}"


def version_number(path: str) -> int | None:
    """``n`` of ``versions/<n>.yaml`` (no leading zero, from 1); None for any other path."""
    match = _VERSION_FILE.match(path)
    return int(match.group(1)) if match else None


def declaration_path(model: str) -> str:
    return f"{DECLARATIONS_DIR}/{model}{YAML}"


def declared_model(entry: str) -> str | None:
    """The model an entry of ``models/`` declares (``churn`` for ``churn.yaml``), or None."""
    return entry[: -len(YAML)] if entry.endswith(YAML) else None


# -- commit trailers ------------------------------------------------------------------

RUN = "Gitml-Run"
MODEL = "Gitml-Model"
VERSION = "Gitml-Version"
STAGE = "Gitml-Stage"
JOURNAL = "Gitml-Journal"
ROLLBACK_OF = "Gitml-Rollback-Of"
# Values are names, numbers, ids and shas: never blank, never with a space.
_TRAILER = re.compile(r"^(Gitml-[A-Za-z-]+): *(\S+) *$", re.MULTILINE)

Trailer = tuple[str, str]


def message(subject: str, trailers: Iterable[Trailer], body: str | None = None) -> str:
    """A commit message: ``gitml: <subject>``, an optional body, then the trailers."""
    lines = "\n".join(f"{key}: {value}" for key, value in trailers)
    text = body.strip() if body else ""
    return f"gitml: {subject}\n\n" + (f"{text}\n\n" if text else "") + lines


def trailers(text: str) -> list[Trailer]:
    """Every ``Gitml-<Key>: <value>`` line of a commit message, in order.

    Any line counts, not only git's last paragraph: a forge's squash merge
    appends paragraphs (``Co-authored-by: ...``) after the ones gitml wrote.
    """
    return _TRAILER.findall(text)


def trailer(text: str, key: str) -> str | None:
    """The last value of trailer ``key`` in a commit message (None: it has none)."""
    found = [value for name, value in trailers(text) if name == key]
    return found[-1] if found else None


def has_trailer(text: str, key: str, value: str) -> bool:
    return (key, value) in trailers(text)


def map_trailer(text: str, key: str, change: Callable[[str], str]) -> str:
    """``text`` with the value of each ``key`` trailer replaced by ``change(value)``."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) != key:
            return match.group(0)
        return f"{key}: {change(match.group(2))}"

    return _TRAILER.sub(one, text)


@dataclass(frozen=True)
class Registration:
    """What a registration commit says it registered: model, version and source run."""

    model: str
    version: int
    run_id: str


def registration(text: str) -> Registration | None:
    """The version a commit message registers, or None for any other commit.

    A registration, and only it, carries ``Gitml-Model``, ``Gitml-Version`` and
    ``Gitml-Run`` together (a stage change names no run, an edit of a version
    no version): the format's own statement, whatever the subject line says and
    however many parents the commit has.
    """
    found = dict(trailers(text))
    model, number, run_id = found.get(MODEL), found.get(VERSION), found.get(RUN)
    if model is None or run_id is None or number is None or not number.isdigit():
        return None
    return Registration(model, int(number), run_id)

"""Typed readers: a record read from its ref, parsed and checked against its name.

Each record has one family here: ``read_<record>(store, ..., at=None)`` reads
it at a commit (default: its ref's tip), ``<record>_at(snap, ...)`` at a
snapshot already open, and ``parse_<record>(data, ...)`` from bytes already
read (the query index's bulk path). All raise ``InvalidRecord`` naming the
ref, the file and the field when a record is malformed or its id or name
disagrees with the ref it is on, and ``NotFound`` when there is no record.

Apart from ``layout`` (names only, no pydantic) so that the fast paths that
need a ref name do not import the record models.
"""

from __future__ import annotations

from gitml.errors import InvalidRecord, NotFound
from gitml.format import layout
from gitml.format.records import Experiment, ModelVersion, RegisteredModel, Run, StageDeclaration
from gitml.format.records import parse as parse_record
from gitml.git.store import CommitInfo, Snapshot, Store

_DOCUMENT = "(document)"


def _tip(store: Store, ref: str, missing: str) -> str:
    tip = store.tip(ref)
    if tip is None:
        raise NotFound(missing)
    return tip


# -- runs ------------------------------------------------------------------------------


def parse_run(data: bytes | None, run_id: str) -> Run:
    """``run.yaml``'s bytes (None: the file is missing) as the record of run ``run_id``."""
    ref, path = layout.run_ref(run_id), layout.RUN_FILE
    if data is None:
        raise InvalidRecord(ref, path, _DOCUMENT, "file is missing")
    run = parse_record(Run, data, where=ref, path=path)
    if run.id != run_id:
        raise InvalidRecord(ref, path, "id", f"'{run.id}' does not match the ref name")
    return run


def run_at(snap: Snapshot, run_id: str) -> Run:
    return parse_run(snap.read(layout.RUN_FILE), run_id)


def read_run(store: Store, run_id: str, at: str | None = None) -> Run:
    """Run ``run_id`` at commit ``at`` (default: the tip of its ref)."""
    if at is None:
        at = _tip(store, layout.run_ref(run_id), f"no run with id '{run_id}'")
    return run_at(store.snapshot(at), run_id)


# -- experiments ---------------------------------------------------------------------------


def parse_experiment(data: bytes | None, experiment_id: str) -> Experiment:
    ref, path = layout.experiment_ref(experiment_id), layout.EXPERIMENT_FILE
    if data is None:
        raise InvalidRecord(ref, path, _DOCUMENT, "file is missing")
    return parse_record(Experiment, data, where=ref, path=path)


def experiment_at(snap: Snapshot, experiment_id: str) -> Experiment:
    return parse_experiment(snap.read(layout.EXPERIMENT_FILE), experiment_id)


def read_experiment(store: Store, experiment_id: str, at: str | None = None) -> Experiment:
    if at is None:
        ref = layout.experiment_ref(experiment_id)
        at = _tip(store, ref, f"no experiment with id '{experiment_id}'")
    return experiment_at(store.snapshot(at), experiment_id)


# -- registered models and their versions --------------------------------------------------


def parse_model(data: bytes | None, name: str) -> RegisteredModel:
    ref, path = layout.model_ref(name), layout.MODEL_FILE
    if data is None:
        raise InvalidRecord(ref, path, _DOCUMENT, "file is missing")
    model = parse_record(RegisteredModel, data, where=ref, path=path)
    if model.name != name:
        raise InvalidRecord(ref, path, "name", f"'{model.name}' does not match the ref")
    return model


def parse_version(data: bytes, name: str, number: int) -> ModelVersion:
    """``versions/<number>.yaml`` of model ``name``: a version of that model, that number."""
    ref, path = layout.model_ref(name), layout.version_path(number)
    version = parse_record(ModelVersion, data, where=ref, path=path)
    if version.name != name:
        raise InvalidRecord(ref, path, "name", f"'{version.name}' does not match the ref")
    if version.version != number:
        raise InvalidRecord(ref, path, "version", f"{version.version} does not match the file")
    return version


def version_at(snap: Snapshot, name: str, number: int) -> ModelVersion:
    data = snap.read(layout.version_path(number))
    if data is None:
        raise NotFound(f"model '{name}' has no version {number}")
    return parse_version(data, name, number)


def read_version(store: Store, name: str, number: int, at: str | None = None) -> ModelVersion:
    """Version ``number`` of model ``name`` at commit ``at`` (default: the model's tip)."""
    if at is None:
        at = _tip(store, layout.model_ref(name), f"no registered model '{name}'")
    return version_at(store.snapshot(at), name, number)


# -- stage declarations -----------------------------------------------------------------------


def parse_declaration(data: bytes, stage: str, model: str) -> StageDeclaration:
    """``models/<model>.yaml`` of ``stage``: a valid declaration of that very model."""
    ref, path = layout.stage_branch(stage), layout.declaration_path(model)
    declared = parse_record(StageDeclaration, data, where=ref, path=path)
    if declared.model != model:
        raise InvalidRecord(ref, path, "model", f"'{declared.model}' does not match")
    return declared


# -- commits ----------------------------------------------------------------------------------


def registration_commit(store: Store, name: str, number: int) -> CommitInfo | None:
    """The commit on model ``name``'s ref that registered version ``number``, by its trailers."""
    tip = store.tip(layout.model_ref(name))
    if tip is None:
        return None
    for info in store.history(tip, stop=lambda _: False):
        found = layout.registration(info.message)
        if found is not None and found.model == name and found.version == number:
            return info
    return None

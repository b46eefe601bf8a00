"""The model registry: registered models and their versions, on ``refs/gitml/models/<name>``.

Each model's ref holds ``model.yaml`` and one ``versions/<n>.yaml`` per
version. A version points at a model logged to a run (``runs:/<id>/<path>``):
the files stay among the run's artifacts, and the version records the run's
commit (which becomes the registration commit's second parent, so
``git log`` walks from a version into its run and on into the code) and a
digest over the model's files as the run's manifest lists them.

Version numbers come from a compare-and-swap update of the model's ref: the
next number is one past the highest file under ``versions/``, and a writer
that loses the race computes it again, so concurrent registrations get
distinct numbers. A deleted version keeps its file (status DELETED), so a
number is never given out twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gitml.errors import Conflict, Corrupt, InvalidInput, InvalidRecord, NotFound
from gitml.format import layout, readers
from gitml.format.layout import MODELS, version_path
from gitml.format.mlmodel import MLMODEL, MLmodel
from gitml.format.paths import split_runs_uri
from gitml.format.records import MODEL_NAME, Artifact, ModelVersion, RegisteredModel, parse
from gitml.git.store import BlobRef, Change, Snapshot
from gitml.registry.declarations import check_name as check_stage
from gitml.registry.declarations import other_version, primary_version, read_declaration
from gitml.tracking import names, validation
from gitml.tracking.git_backend import read_manifest

if TYPE_CHECKING:
    from gitml.tracking.client import Client

_NAME = re.compile(MODEL_NAME)
_MODELS_URI = re.compile(r"^models:/([^/@]+)(?:/([^/]+)|@([^/]+))/?\Z")
_SUMMARY_LIMIT = 500


def check_name(name: str) -> str:
    """``name`` if it can name a registered model (one Git ref component)."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"model name must be a non-empty string, got {name!r}")
    if len(name) > 200 or not _NAME.match(name) or name.endswith(".lock"):
        raise InvalidInput(
            f"model name {name!r}: use letters, digits, '_', '-' and '.' between them "
            "(at most 200 characters, not ending in '.lock'); it names a Git ref"
        )
    return name


def model_digest(files: Iterable[tuple[str, str]]) -> str:
    """sha256 over ``(path relative to the model folder, file sha256)`` pairs, in path order."""
    listing = "".join(f"{sha}  {path}\n" for path, sha in sorted(files))
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def model_files(artifacts: Iterable[Artifact], model_path: str) -> list[tuple[str, str]]:
    """The manifest entries under ``model_path``, relative to it."""
    prefix = model_path + "/"
    return [(a.path[len(prefix) :], a.sha256) for a in artifacts if a.path.startswith(prefix)]


def signature_summary(signature: Mapping[str, Any] | None) -> dict[str, str]:
    """One line per part of an MLmodel signature: ``a: double, b: string`` or a tensor's shape."""
    out: dict[str, str] = {}
    for part in ("inputs", "outputs", "params"):
        text = (signature or {}).get(part)
        if not text:
            continue
        try:
            specs = json.loads(text)
        except (TypeError, ValueError):
            continue
        if not isinstance(specs, list):
            continue
        items = [_spec_summary(spec) for spec in specs if isinstance(spec, dict)]
        line = ", ".join(items)
        out[part] = line if len(line) <= _SUMMARY_LIMIT else line[: _SUMMARY_LIMIT - 3] + "..."
    return out


def _spec_summary(spec: Mapping[str, Any]) -> str:
    if spec.get("type") == "tensor":
        tensor = spec.get("tensor-spec") or {}
        shape = tuple(tensor.get("shape") or ())
        head = f"{spec['name']}: " if spec.get("name") else ""
        return f"{head}tensor {tensor.get('dtype', '?')} {shape}"
    kind = spec.get("type", "?")
    return f"{spec['name']}: {kind}" if spec.get("name") is not None else str(kind)


class Registry:
    """Registered models and versions in the repository a tracking ``Client`` writes to."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.runs = client.git  # the registry needs the repository the runs are in
        self.store = self.runs.store

    # -- registered models ---------------------------------------------------

    def create_model(
        self,
        name: str,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> RegisteredModel:
        """A new registered model; ``Conflict`` if the name is taken."""
        created = self._create_model(name, description, tags)
        if created is None:
            raise Conflict(f"registered model '{name}' already exists")
        return created

    def _create_model(
        self, name: str, description: str | None, tags: Mapping[str, Any] | None
    ) -> RegisteredModel | None:
        check_name(name)
        model = RegisteredModel(
            name=name,
            description=description,
            creation_time=self.client.now(),
            tags=validation.tags(tags or {}),
        )

        made: list[RegisteredModel] = []

        def edit(snap: Snapshot | None) -> Change | None:
            made.clear()
            if snap is not None:
                current = readers.parse_model(snap.read(layout.MODEL_FILE), name)
                if current.status != "DELETED":
                    return None
            # A new model, or one deleted before: its old versions stay DELETED and
            # keep their numbers, and the new ones follow them.
            made.append(model)
            return Change({layout.MODEL_FILE: model.to_yaml()})

        self.store.update(MODELS + name, edit, _message(f"create model {name}", name))
        return made[0] if made else None

    def get_model(self, name: str) -> RegisteredModel:
        return self._read_model(name, self._snapshot(name))

    def list_models(self, problems: list[InvalidRecord] | None = None) -> list[RegisteredModel]:
        """Every registered model, by name; a malformed record raises ``InvalidRecord``,
        or, given ``problems``, is skipped and added there (a listing shows the rest)."""
        found = []
        for ref, tip in sorted(self.store.refs(MODELS).items()):
            try:
                model = readers.parse_model(
                    self.store.snapshot(tip).read(layout.MODEL_FILE), ref[len(MODELS) :]
                )
            except InvalidRecord as exc:
                if problems is None:
                    raise
                problems.append(exc)
                continue
            if model.status != "DELETED":
                found.append(model)
        return found

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        set_tags: Mapping[str, Any] | None = None,
        delete_tags: Iterable[str] = (),
    ) -> RegisteredModel:
        """Change a model's description or tags (a value of None leaves it as it is)."""
        tag_values = validation.tags(set_tags or {})
        removed = list(delete_tags)
        result: list[RegisteredModel] = []

        def edit(snap: Snapshot | None) -> Change | None:
            model = self._read_model(name, snap)
            tags = {k: v for k, v in {**model.tags, **tag_values}.items() if k not in removed}
            new = model.model_copy(
                update={
                    "description": model.description if description is None else description,
                    "tags": tags,
                }
            )
            result[:] = [new]
            return None if new == model else Change({layout.MODEL_FILE: new.to_yaml()})

        self.store.update(MODELS + name, edit, _message(f"update model {name}", name))
        return result[0]

    def delete_model(self, name: str) -> None:
        """Mark the model and each of its versions DELETED, in one commit on its ref.

        Nothing is removed: ``git log`` keeps every version and change, while the
        registry answers as if the model were gone. Refused while a stage branch
        (or a proposal to one) declares it, as its versions are what that stage serves.
        """
        self.get_model(name)
        holders = self._declaring_branches(name)
        if holders:
            raise Conflict(
                f"registered model '{name}' is declared on {', '.join(holders)}: remove it "
                f"from there first (gitml stage remove <stage> {name}) and delete it again"
            )

        def edit(snap: Snapshot | None) -> Change | None:
            if snap is None:
                raise NotFound(f"no registered model '{name}'")
            model = self._read_model(name, snap)
            files: dict[str, bytes | BlobRef | None] = {
                layout.MODEL_FILE: model.model_copy(update={"status": "DELETED"}).to_yaml()
            }
            for entry, is_dir, sha in snap.listdir(layout.VERSIONS_DIR):
                number = _file_number(entry)
                if is_dir or number is None:
                    continue
                version = readers.parse_version(snap.blob(sha), name, number)
                if version.status != "DELETED":
                    deleted = version.model_copy(update={"status": "DELETED"})
                    files[version_path(number)] = deleted.to_yaml()
            return Change(files)

        self.store.update(MODELS + name, edit, _message(f"delete model {name}", name))

    def _declaring_branches(self, name: str) -> list[str]:
        """The stage branches that declare a version of ``name``, and the proposals of one."""
        found = []
        for ref in sorted(self.store.refs(layout.STAGES)):
            if ref.startswith(layout.PROPOSALS):
                proposal = layout.proposed(ref)
                if proposal is not None and proposal[1] == name:
                    found.append(ref)
            elif read_declaration(self.store, ref[len(layout.STAGES) :], name) is not None:
                found.append(ref)
        return found

    # -- versions ---------------------------------------------------------------

    def register(
        self,
        model_uri: str,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        version: int | None = None,
        creation_time: int | None = None,
    ) -> ModelVersion:
        """A new version of ``name`` (created if needed) for the model at ``model_uri``.

        ``model_uri`` is ``runs:/<run_id>/<path>`` or a ``models:/`` URI (which
        registers the same run's files again, under this name). ``version`` and
        ``creation_time`` keep another registry's number and time (an import);
        a number already given out is a ``Conflict``.
        """
        if version is not None:
            _number(version)
        check_name(name)
        run_id, model_path = self._source(model_uri)
        self.client.flush()  # a model logged by this process must be committed first
        run_commit = self.runs.run_tip(run_id)
        snap = self.store.snapshot(run_commit)
        artifacts = read_manifest(snap)
        files = model_files(artifacts, model_path)
        entry = next((a for a in artifacts if a.path == f"{model_path}/{MLMODEL}"), None)
        if entry is None:
            raise InvalidInput(
                f"{model_uri}: run {run_id} has no model at '{model_path}' (no MLmodel file); "
                "log one with gitml.<flavor>.log_model first"
            )
        mlmodel = self._mlmodel(run_id, snap, entry)
        self._create_model(name, None, None)
        tag_values = validation.tags(tags or {})
        now = self.client.now() if creation_time is None else creation_time

        made: list[ModelVersion] = []

        def edit(snap: Snapshot | None) -> Change | None:
            number = _highest(snap) + 1 if version is None else version
            if version is not None and snap is not None and snap.lookup(version_path(number)):
                raise Conflict(f"model '{name}' already has a version {number}")
            made_version = ModelVersion(
                name=name,
                version=number,
                source=model_uri,
                run_id=run_id,
                run_commit=run_commit,
                model_path=model_path,
                digest=model_digest(files),
                flavors=sorted(mlmodel.get("flavors") or {}),
                signature=signature_summary(mlmodel.get("signature")),
                description=description,
                tags=tag_values,
                user=names.user(),
                creation_time=now,
            )
            made[:] = [made_version]
            subject = f"register {name} version {number} from run {run_id[:12]}"
            trailers = [(layout.VERSION, str(number)), (layout.RUN, run_id)]
            return Change(
                {version_path(number): made_version.to_yaml()},
                merge_parents=(run_commit,),
                message=_message(subject, name, trailers),
            )

        self.store.update(MODELS + name, edit, _message(f"register {name}", name))
        return made[0]

    def get_version(self, name: str, version: int | str) -> ModelVersion:
        number = _number(version)
        return readers.version_at(self._snapshot(name), name, number)

    def versions(
        self,
        name: str,
        *,
        include_deleted: bool = False,
        problems: list[InvalidRecord] | None = None,
    ) -> list[ModelVersion]:
        """Every version of ``name``, oldest first; a malformed one raises ``InvalidRecord``,
        or, given ``problems``, is skipped and added there."""
        snap = self._snapshot(name)
        found = []
        for entry, is_dir, sha in snap.listdir(layout.VERSIONS_DIR):
            number = _file_number(entry)
            if is_dir or number is None:
                continue
            try:
                version = readers.parse_version(snap.blob(sha), name, number)
            except InvalidRecord as exc:
                if problems is None:
                    raise
                problems.append(exc)
                continue
            if include_deleted or version.status != "DELETED":
                found.append(version)
        return sorted(found, key=lambda v: v.version)

    def latest_version(self, name: str) -> ModelVersion:
        live = self.versions(name)
        if not live:
            raise NotFound(f"model '{name}' has no versions")
        return live[-1]

    def update_version(
        self,
        name: str,
        version: int | str,
        *,
        description: str | None = None,
        set_tags: Mapping[str, Any] | None = None,
        delete_tags: Iterable[str] = (),
        status: str | None = None,
    ) -> ModelVersion:
        number = _number(version)
        tag_values = validation.tags(set_tags or {})
        removed = list(delete_tags)
        result: list[ModelVersion] = []

        def edit(snap: Snapshot | None) -> Change | None:
            data = snap.read(version_path(number)) if snap is not None else None
            if data is None:
                raise NotFound(f"model '{name}' has no version {number}")
            old = readers.parse_version(data, name, number)
            tags = {k: v for k, v in {**old.tags, **tag_values}.items() if k not in removed}
            new = old.model_copy(
                update={
                    "description": old.description if description is None else description,
                    "tags": tags,
                    "status": old.status if status is None else status,
                }
            )
            result[:] = [new]
            return None if new == old else Change({version_path(number): new.to_yaml()})

        what = "delete" if status == "DELETED" else "update"
        self._ensure(name)
        self.store.update(MODELS + name, edit, _message(f"{what} {name} version {number}", name))
        return result[0]

    def delete_version(self, name: str, version: int | str) -> ModelVersion:
        """Mark a version DELETED; its number is never given out again."""
        return self.update_version(name, version, status="DELETED")

    # -- model URIs -------------------------------------------------------------

    def resolve(self, uri: str) -> ModelVersion:
        """The version ``models:/<name>/<version>``, ``/latest`` or ``@<stage>`` names."""
        match = _MODELS_URI.match(uri)
        if match is None:
            raise InvalidInput(
                f"model URI {uri!r}: expected models:/<name>/<version>, models:/<name>/latest "
                "or models:/<name>@<stage>"
            )
        name, ref, stage = match.groups()
        check_name(name)
        if stage is not None:
            return self._staged(name, stage, uri)
        if ref == "latest":
            return self.latest_version(name)
        if ref.isdigit():
            version = self.get_version(name, int(ref))
            if version.status == "DELETED":
                raise NotFound(f"{uri}: version {ref} of '{name}' was deleted")
            return version
        # MLflow 2's models:/<name>/<Stage> form, for the stages gitml knows.
        return self._staged(name, ref, uri)

    def _staged(self, name: str, stage: str, uri: str) -> ModelVersion:
        # A canary declares two; the URI means the one taking most of the traffic.
        declared = read_declaration(self.store, check_stage(stage.lower()), name)
        number = primary_version(declared)
        if declared is None or number is None:
            raise NotFound(f"{uri}: stage '{stage.lower()}' declares no version of '{name}'")
        version = self.get_version(name, number)
        served = next(v for v in declared.versions if v.version == number)
        wrong = other_version(stage.lower(), name, served, version)
        if wrong is not None:
            raise Conflict(f"{uri}: {wrong}")
        return version

    def check_digest(self, version: ModelVersion) -> None:
        """``Corrupt`` unless the run still holds exactly the files the version recorded."""
        tip = self.runs.run_tip(version.run_id)
        artifacts = read_manifest(self.store.snapshot(tip))
        digest = model_digest(model_files(artifacts, version.model_path))
        if digest != version.digest:
            raise Corrupt(
                f"model '{version.name}' version {version.version}: the files under "
                f"'{version.model_path}' of run {version.run_id} no longer match the "
                f"registered digest ({digest} != {version.digest})"
            )

    # -- reading -----------------------------------------------------------------

    def _source(self, uri: str) -> tuple[str, str]:
        if not isinstance(uri, str):
            raise InvalidInput(f"model URI must be a string, got {uri!r}")
        if uri.startswith("models:"):
            version = self.resolve(uri)
            return version.run_id, version.model_path
        parts = split_runs_uri(uri)
        if parts is None:
            raise InvalidInput(
                f"model URI {uri!r}: a registered model comes from a run; expected "
                "runs:/<run_id>/<path> (log the model with gitml.<flavor>.log_model first)"
            )
        return self.client.resolve_run_id(parts[0]), parts[1]

    def _mlmodel(self, run_id: str, snap: Snapshot, entry: Artifact) -> dict[str, Any]:
        """The ``MLmodel`` that manifest ``entry`` of the run's commit ``snap`` holds."""
        data = self.runs.artifact_bytes(run_id, snap, entry)
        return parse(MLmodel, data, where=f"run {run_id}", path=entry.path).to_plain()

    def _snapshot(self, name: str) -> Snapshot:
        check_name(name)
        tip = self.store.tip(MODELS + name)
        if tip is None:
            raise NotFound(f"no registered model '{name}'")
        return self.store.snapshot(tip)

    def _ensure(self, name: str) -> None:
        self._snapshot(name)

    def _read_model(self, name: str, snap: Snapshot | None) -> RegisteredModel:
        if snap is None:
            raise NotFound(f"no registered model '{name}'")
        model = readers.parse_model(snap.read(layout.MODEL_FILE), name)
        if model.status == "DELETED":
            raise NotFound(f"registered model '{name}' was deleted")
        return model


def _highest(snap: Snapshot | None) -> int:
    if snap is None:
        return 0
    names = snap.names(layout.VERSIONS_DIR)
    if not names:
        return 0
    # Without leading zeros, the highest number is the longest name, then the
    # greatest: found in C, where parsing 1,000 names cost 1.5 ms.
    longest = len(max(names, key=len))
    number = _file_number(max(n for n in names if len(n) == longest))
    if number is not None:
        return number
    numbers = [_file_number(name) for name in names]  # something else is in versions/
    return max((n for n in numbers if n is not None), default=0)


def _file_number(name: str) -> int | None:
    stem, _, ext = name.partition(".")
    if ext != "yaml" or not stem.isdigit() or stem.startswith("0"):
        return None
    return int(stem)


def _number(version: int | str) -> int:
    if isinstance(version, bool) or not (
        isinstance(version, int) or (isinstance(version, str) and version.isdigit())
    ):
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    number = int(version)
    if number < 1:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    return number


def _message(subject: str, name: str, trailers: Iterable[layout.Trailer] = ()) -> str:
    return layout.message(subject, [(layout.MODEL, name), *trailers])


def register_model(
    model_uri: str,
    name: str,
    *,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Register the model at ``model_uri`` (``runs:/<id>/<path>``) as the next version of ``name``.

    As ``mlflow.register_model``: the model is created on first use. The
    registration is a commit on ``refs/gitml/models/<name>`` whose second
    parent is the run's commit.
    """
    from gitml.tracking import fluent

    registry = Registry(fluent.get_client())
    return registry.register(model_uri, name, tags=tags, description=description)

"""Saving and loading a model directory, and logging one to a run.

A model is a directory holding ``MLmodel`` (YAML, keys sorted as MLflow's
writer sorts them), the flavor's files, the environment files and, when given,
``input_example.json``. ``gitml.sha256`` lists every other file's sha256 (in
``sha256sum`` format) so a local directory is verified before anything in it
is unpickled; MLflow ignores the extra file.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import Corrupt, InvalidInput, NotFound
from gitml.format.mlmodel import MLMODEL, MLmodel, SignatureRecord
from gitml.format.paths import inside
from gitml.format.records import parse
from gitml.models.signature import ModelSignature, Schema, infer_schema

if TYPE_CHECKING:
    from gitml.models.flavor import Flavor

MANIFEST = "gitml.sha256"
INPUT_EXAMPLE = "input_example.json"
# The example as a scoring request body, as MLflow 2.x/3.x writes it beside the example.
SERVING_INPUT_EXAMPLE = "serving_input_example.json"
HISTORY_TAG = "mlflow.log-model.history"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # what MLflow writes in utc_time_created
_HISTORY_LIMIT = 8000  # the longest tag value a run takes


class Model:
    """A saved model's metadata: the ``MLmodel`` record and its parsed signature."""

    def __init__(self, record: MLmodel, path: Path | None = None) -> None:
        self.record = record
        self.path = path
        sig = record.signature
        self.signature: ModelSignature | None = (
            ModelSignature.from_dict(sig.model_dump()) if sig is not None else None
        )

    flavors = property(lambda self: self.record.flavors)
    run_id = property(lambda self: self.record.run_id)
    artifact_path = property(lambda self: self.record.artifact_path)
    model_uuid = property(lambda self: self.record.model_uuid)
    utc_time_created = property(lambda self: self.record.utc_time_created)
    saved_input_example_info = property(lambda self: self.record.saved_input_example_info)

    def get_input_schema(self) -> Schema | None:
        return self.signature.inputs if self.signature else None

    def get_output_schema(self) -> Schema | None:
        return self.signature.outputs if self.signature else None

    @classmethod
    def load(cls, path: str | Path) -> Model:
        directory = Path(path)
        file = directory / MLMODEL if directory.is_dir() else directory
        if not file.is_file():
            raise NotFound(f"{directory} is not a model: it has no {MLMODEL} file")
        record = parse(MLmodel, file.read_bytes(), where=str(file.parent), path=MLMODEL)
        return cls(record, file.parent)

    def load_input_example(self) -> Any:
        info = self.saved_input_example_info
        if not info or self.path is None:
            return None
        example = model_file(self.path, info.get("artifact_path", INPUT_EXAMPLE))
        data = json.loads(example.read_text())
        if info.get("type") == "dataframe":
            import pandas as pd

            return pd.DataFrame(data["data"], columns=data["columns"])
        if info.get("type") == "ndarray":
            import numpy as np

            inputs = data["inputs"]
            if isinstance(inputs, dict):
                return {k: np.asarray(v) for k, v in inputs.items()}
            return np.asarray(inputs)
        return data


@dataclass(frozen=True)
class ModelInfo:
    """What ``log_model`` returns, as MLflow's ``ModelInfo`` does."""

    artifact_path: str
    flavors: dict[str, dict[str, Any]]
    model_uri: str
    model_uuid: str
    run_id: str
    saved_input_example_info: dict[str, Any] | None
    signature: ModelSignature | None
    utc_time_created: str
    registered_model_version: int | None = None


# -- saving -----------------------------------------------------------------------


def save(
    flavor: Flavor,
    model: Any,
    path: str | Path,
    *,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    **options: Any,
) -> Model:
    """Write ``model`` as a directory in MLflow's format; ``path`` must not exist yet.

    ``flavor`` is one of ``gitml.models.flavor.FLAVORS``; ``options`` are its own keywords.
    """
    from gitml.models import environment  # importlib.metadata: only saving needs it, not loading

    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"{target} already exists; save the model to a new directory")
    target.mkdir(parents=True, exist_ok=True)
    try:
        flavor_conf: dict[str, Any] = flavor.save(model, target, **options)
        env = environment.write(target, flavor.REQUIREMENTS)
        pyfunc: dict[str, Any] = {
            **flavor.pyfunc_conf(flavor_conf),
            "env": env,
            "python_version": platform.python_version(),
        }
        flavors = {"python_function": dict(sorted(pyfunc.items()))}
        if flavor.FLAVOR_NAME != "python_function":
            flavors[flavor.FLAVOR_NAME] = flavor_conf
        example_info = _save_example(target, input_example) if input_example is not None else None
        record = MLmodel(
            artifact_path=artifact_path,
            flavors=flavors,
            metadata=dict(metadata) if metadata else None,
            model_size_bytes=sum(f.stat().st_size for f in target.rglob("*") if f.is_file()),
            model_uuid=uuid.uuid4().hex,
            run_id=run_id,
            saved_input_example_info=example_info,
            utc_time_created=datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT),
        )
        if signature is None and input_example is not None:
            signature = _infer_from_example(flavor, target, Model(record, target), input_example)
        if signature is not None:
            record.signature = SignatureRecord(**signature.to_dict())
        (target / MLMODEL).write_bytes(record.to_yaml())
        write_manifest(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return Model(record, target)


def _infer_from_example(flavor: Flavor, path: Path, model: Model, example: Any) -> ModelSignature:
    inputs = infer_schema(example)
    outputs = None
    try:
        outputs = infer_schema(flavor.load_pyfunc(path, model).predict(example, None))
    except Exception:  # a model that cannot score its own example still saves (MLflow too)
        outputs = None
    return ModelSignature(inputs=inputs, outputs=outputs)


def _save_example(path: Path, example: Any) -> dict[str, Any]:
    """``input_example.json`` and ``serving_input_example.json`` in MLflow's layout.

    The second is the example as a request body for ``/invocations`` (and
    ``gitml models predict -i``), as MLflow writes it: ``{"dataframe_split":
    {"columns", "data"}}`` for a DataFrame, ``{"inputs": ...}`` for arrays,
    indented by two. Returns ``saved_input_example_info``, which names both.
    """
    import numpy as np

    try:
        import pandas as pd
    except ImportError:
        pd = None
    info: dict[str, Any] = {"artifact_path": INPUT_EXAMPLE}
    if isinstance(example, np.ndarray) or (
        isinstance(example, Mapping) and all(isinstance(v, np.ndarray) for v in example.values())
    ):
        body: Any = {"inputs": _plain(example)}
        serving: dict[str, Any] = body
        info.update(type="ndarray", format="tf-serving")
    else:
        if pd is None:
            raise InvalidInput("saving this input example needs pandas")
        if isinstance(example, Mapping):
            example = pd.DataFrame([example]) if _all_scalars(example) else pd.DataFrame(example)
        elif not isinstance(example, pd.DataFrame):
            example = pd.DataFrame(example)
        body = {
            "columns": [str(c) for c in example.columns],
            "data": _plain(example.to_numpy(dtype=object).tolist()),
        }
        serving = {"dataframe_split": body}
        info.update(type="dataframe", pandas_orient="split")
    (path / INPUT_EXAMPLE).write_text(json.dumps(body, default=_json_default))
    (path / SERVING_INPUT_EXAMPLE).write_text(json.dumps(serving, default=_json_default, indent=2))
    info["serving_input_path"] = SERVING_INPUT_EXAMPLE
    return info


def _all_scalars(data: Mapping[str, Any]) -> bool:
    return all(isinstance(v, (str, bytes, bool, int, float)) for v in data.values())


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# -- the local manifest ---------------------------------------------------------------


def _digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


def write_manifest(path: Path) -> None:
    files = sorted(
        f.relative_to(path).as_posix()
        for f in path.rglob("*")
        if f.is_file() and f.name != MANIFEST
    )
    lines = [f"{_digest(path / rel)}  {rel}" for rel in files]
    (path / MANIFEST).write_text("\n".join(lines) + "\n")


def flavor_of(
    model_uri: str | os.PathLike[str], flavor: str, *, hint: str = ""
) -> tuple[Path, Model, dict[str, Any]]:
    """The directory ``model_uri`` names, its ``MLmodel``, and the configuration of ``flavor``.

    Nothing is verified yet: a loader calls ``verify`` before it unpickles.
    """
    from gitml.models import uri

    directory = uri.resolve(model_uri)
    model = Model.load(directory)
    conf = model.flavors.get(flavor)
    if conf is None:
        raise InvalidInput(
            f"model {os.fspath(model_uri)!r} has no {flavor} flavor "
            f"(it has {sorted(model.flavors)}){hint}"
        )
    return directory, model, conf


def model_file(directory: Path, relative: object) -> Path:
    """A file that ``MLmodel`` names, refused unless it resolves inside the model directory.

    ``MLmodel`` is data that travels with the model: a path in it such as
    ``../outside.pkl``, ``/tmp/x.pkl`` or a symlink leading out would make a
    loader unpickle a file that ``gitml.sha256`` never covered.
    """
    return inside(directory, str(relative), f"model {directory}")


def verify(path: Path) -> None:
    """Check every file ``gitml.sha256`` lists; ``Corrupt`` names the first that differs.

    A directory without the manifest (saved by MLflow) is loaded as it is.
    """
    manifest = path / MANIFEST
    if not manifest.is_file():
        return
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        sha, _, rel = line.partition("  ")
        file = model_file(path, rel)
        if not file.is_file():
            raise Corrupt(f"model {path}: {rel} is listed in {MANIFEST} but missing")
        actual = _digest(file)
        if actual != sha:
            raise Corrupt(
                f"model {path}: {rel} has sha256 {actual}, {MANIFEST} says {sha}; "
                "refusing to load a model that changed after it was saved"
            )


# -- logging to a run ------------------------------------------------------------------


def log(
    flavor: Flavor,
    model: Any,
    name: str,
    *,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    registered_model_name: str | None = None,
    **options: Any,
) -> ModelInfo:
    """Save to a temporary directory, then store it as the run's artifacts under ``name``.

    Artifacts are content-addressed, so the pickled model of an unchanged
    model is stored once however often it is logged. With
    ``registered_model_name`` the logged model is also registered as the
    next version of that model (created if needed).
    """
    from gitml.format import paths as artifact_paths
    from gitml.tracking import fluent

    artifact_path = artifact_paths.clean_path(name)
    client = fluent.get_client()
    run_id = run_id or fluent.current_run_id()
    with tempfile.TemporaryDirectory(prefix="gitml-model-") as tmp:
        saved = save(
            flavor,
            model,
            Path(tmp) / "model",
            signature=signature,
            input_example=input_example,
            metadata=metadata,
            run_id=run_id,
            artifact_path=artifact_path,
            **options,
        )
        client.log_artifacts(run_id, Path(tmp) / "model", artifact_path=artifact_path)
    record = saved.record
    _record_history(client, run_id, record)
    model_uri = f"runs:/{run_id}/{artifact_path}"
    registered = None
    if registered_model_name is not None:
        from gitml.registry.versions import Registry

        registered = Registry(client).register(model_uri, registered_model_name).version
    return ModelInfo(
        artifact_path=artifact_path,
        flavors=record.flavors,
        model_uri=model_uri,
        model_uuid=record.model_uuid or "",
        run_id=run_id,
        saved_input_example_info=record.saved_input_example_info,
        signature=saved.signature,
        utc_time_created=record.utc_time_created or "",
        registered_model_version=registered,
    )


@dataclass(frozen=True)
class LoggedModel:
    """One entry of a run's ``mlflow.log-model.history`` tag."""

    artifact_path: str
    flavors: list[str]
    time: str  # utc_time_created to the second, "YYYY-MM-DD HH:MM:SS UTC"; "" if absent
    model_uuid: str | None

    def to_plain(self) -> dict[str, Any]:
        return {
            "artifact_path": self.artifact_path,
            "flavors": self.flavors,
            "time": self.time,
            "model_uuid": self.model_uuid,
        }


def logged_models(tags: Mapping[str, str]) -> list[LoggedModel] | None:
    """The models a run's ``mlflow.log-model.history`` tag lists, oldest first.

    None when the run has no such tag or its value is not the JSON list MLflow
    and gitml write (then it is shown as it is).
    """
    text = tags.get(HISTORY_TAG)
    if text is None:
        return None
    try:
        history = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
        return None
    out = []
    for entry in history:
        flavors = entry.get("flavors")
        created = entry.get("utc_time_created")
        uuid_ = entry.get("model_uuid")
        out.append(
            LoggedModel(
                artifact_path=str(entry.get("artifact_path") or ""),
                flavors=sorted(flavors) if isinstance(flavors, dict) else [],
                time=f"{created[:19]} UTC" if isinstance(created, str) and created else "",
                model_uuid=uuid_ if isinstance(uuid_, str) else None,
            )
        )
    return out


def _record_history(client: Any, run_id: str, record: MLmodel) -> None:
    """Append to the run's ``mlflow.log-model.history`` tag, as MLflow does."""
    previous = client.get_run(run_id).tags.get(HISTORY_TAG)
    try:
        history = json.loads(previous) if previous else []
    except json.JSONDecodeError:
        history = []
    if not isinstance(history, list):
        history = []
    entry = {
        "run_id": run_id,
        "artifact_path": record.artifact_path,
        "utc_time_created": record.utc_time_created,
        "model_uuid": record.model_uuid,
        "flavors": record.flavors,
    }
    history.append(entry)
    text = json.dumps(history)
    while len(text) > _HISTORY_LIMIT and len(history) > 1:
        history.pop(0)  # keep the newest entries within the tag limit
        text = json.dumps(history)
    if len(text) <= _HISTORY_LIMIT:
        client.set_tag(run_id, HISTORY_TAG, text)

"""The record of the ``MLmodel`` file a saved model holds, as MLflow writes it.

The models package saves and loads these files; the registry reads one from a
run's artifacts when it registers a version.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field

from gitml.format.records import Integer, Record

MLMODEL = "MLmodel"


def _example_paths(info: dict[str, Any]) -> dict[str, Any]:
    """``saved_input_example_info``: the files it names are strings; other keys are kept."""
    for key in ("artifact_path", "serving_input_path"):
        if key in info and not isinstance(info[key], str):
            raise ValueError(f"'{key}' must be a string")
    return info


ExampleInfo = Annotated[dict[str, Any], AfterValidator(_example_paths)]


class SignatureRecord(Record):
    """``signature`` in ``MLmodel``: each part a JSON string (or null), as MLflow writes it."""

    inputs: str | None = None
    outputs: str | None = None
    params: str | None = None


class MLmodel(Record):
    """The ``MLmodel`` file. Fields are in MLflow's (alphabetical) key order.

    Unknown top-level keys are kept, as MLflow's ``Model`` keeps them, so a file
    written by a newer MLflow still loads.
    """

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    artifact_path: str | None = None
    databricks_runtime: str | None = None
    flavors: dict[str, dict[str, Any]] = Field(min_length=1)
    metadata: dict[str, Any] | None = None
    mlflow_version: str | None = None
    model_size_bytes: Integer | None = Field(default=None, ge=0)
    # MLflow 3 writes "m-<hex>" (its model id); MLflow 2 and gitml a plain uuid hex.
    model_uuid: str | None = Field(default=None, pattern=r"^(m-)?[0-9a-f]{32}$")
    run_id: str | None = None
    saved_input_example_info: ExampleInfo | None = None
    signature: SignatureRecord | None = None
    utc_time_created: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?$"
    )

    def to_plain(self) -> dict[str, Any]:
        # MLflow's writer (yaml.safe_dump) sorts keys at every level.
        data = {k: v for k, v in self.model_dump(mode="python").items() if v is not None}
        return _sorted(data)  # type: ignore[no-any-return]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value

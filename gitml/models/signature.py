"""Model signatures: what a model takes and returns, in MLflow's JSON form.

A signature is stored in ``MLmodel`` as three JSON strings (``inputs``,
``outputs``, ``params``), exactly as MLflow writes them, so a model saved by
either tool is read by the other:

- column-based: ``[{"type": "double", "name": "x", "required": true}, ...]``
  with MLflow's type names (boolean, integer, long, float, double, string,
  binary, datetime);
- tensor-based: ``[{"type": "tensor", "tensor-spec": {"dtype": "float64",
  "shape": [-1, 4]}}]`` with numpy dtype names and -1 for a free dimension;
- params: ``[{"name": "k", "type": "long", "default": 1, "shape": null}]``.

numpy and pandas are imported only when data is inspected, so reading a
signature costs neither.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitml.errors import InvalidInput

# MLflow's type name -> the numpy dtype a column of that type holds.
DATA_TYPES: dict[str, str] = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


@dataclass(frozen=True)
class ColSpec:
    """One named (or, for a single unnamed column, anonymous) column."""

    type: str
    name: str | None = None
    required: bool = True

    def __post_init__(self) -> None:
        if self.type not in DATA_TYPES:
            raise InvalidInput(
                f"column type {self.type!r} is not one of MLflow's: {', '.join(DATA_TYPES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of numpy ``dtype``; -1 in ``shape`` is a dimension of any size."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "tensor", "tensor-spec": {}}
        if self.name is not None:
            out = {"name": self.name, **out}
        out["tensor-spec"] = {"dtype": self.dtype, "shape": list(self.shape)}
        return out


@dataclass(frozen=True)
class ParamSpec:
    """An inference parameter (``predict(..., params={name: value})``) and its default."""

    name: str
    type: str
    default: Any
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        default = self.default
        if isinstance(default, datetime.datetime):
            default = default.isoformat()
        shape = list(self.shape) if self.shape is not None else None
        return {"name": self.name, "type": self.type, "default": default, "shape": shape}


@dataclass(frozen=True)
class Schema:
    """The inputs (or outputs) of a model: all columns, or all tensors."""

    inputs: list[ColSpec | TensorSpec]

    def __post_init__(self) -> None:
        kinds = {isinstance(s, TensorSpec) for s in self.inputs}
        if len(kinds) > 1:
            raise InvalidInput("a schema holds either column specs or tensor specs, not both")
        names = [s.name for s in self.inputs]
        if len(self.inputs) > 1 and None in names:
            raise InvalidInput("a schema with more than one input must name every input")

    def is_tensor_spec(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    def has_input_names(self) -> bool:
        return bool(self.inputs) and self.inputs[0].name is not None

    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs if s.name is not None]

    def required_input_names(self) -> list[str]:
        return [
            s.name
            for s in self.inputs
            if s.name is not None and (isinstance(s, TensorSpec) or s.required)
        ]

    def to_dict(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.inputs]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Schema:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"signature schema is not JSON: {exc}") from None
        if not isinstance(items, list):
            raise InvalidInput("signature schema must be a JSON list of specs")
        specs: list[ColSpec | TensorSpec] = []
        for item in items:
            if not isinstance(item, dict) or "type" not in item:
                raise InvalidInput(f"signature spec {item!r} has no 'type'")
            if item["type"] == "tensor":
                spec = item.get("tensor-spec") or {}
                specs.append(
                    TensorSpec(
                        dtype=str(spec.get("dtype")),
                        shape=tuple(int(d) for d in spec.get("shape", [])),
                        name=item.get("name"),
                    )
                )
            else:
                if not isinstance(item["type"], str):
                    # Objects, arrays and maps (MLflow 2.10+) are not enforced here yet.
                    raise InvalidInput(f"signature type {item['type']!r} is not supported")
                specs.append(
                    ColSpec(
                        type=item["type"],
                        name=item.get("name"),
                        required=bool(item.get("required", True)),
                    )
                )
        return cls(specs)


@dataclass(frozen=True)
class ParamSchema:
    params: list[ParamSpec]

    def to_json(self) -> str:
        return json.dumps([p.to_dict() for p in self.params])

    @classmethod
    def from_json(cls, text: str) -> ParamSchema:
        items = json.loads(text)
        return cls(
            [
                ParamSpec(
                    name=p["name"],
                    type=p["type"],
                    default=p.get("default"),
                    shape=tuple(p["shape"]) if p.get("shape") is not None else None,
                )
                for p in items
            ]
        )


@dataclass(frozen=True)
class ModelSignature:
    inputs: Schema | None = None
    outputs: Schema | None = None
    params: ParamSchema | None = field(default=None)

    def to_dict(self) -> dict[str, str | None]:
        """The ``signature`` mapping of ``MLmodel``: each part a JSON string or null."""
        return {
            "inputs": self.inputs.to_json() if self.inputs is not None else None,
            "outputs": self.outputs.to_json() if self.outputs is not None else None,
            "params": self.params.to_json() if self.params is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSignature:
        inputs, outputs, params = data.get("inputs"), data.get("outputs"), data.get("params")
        return cls(
            inputs=Schema.from_json(inputs) if inputs else None,
            outputs=Schema.from_json(outputs) if outputs else None,
            params=ParamSchema.from_json(params) if params else None,
        )


# -- inference ------------------------------------------------------------------


def infer_signature(
    model_input: Any, model_output: Any = None, params: Mapping[str, Any] | None = None
) -> ModelSignature:
    """A signature from example data: numpy arrays, lists, dicts, pandas DataFrames."""
    return ModelSignature(
        inputs=infer_schema(model_input),
        outputs=infer_schema(model_output) if model_output is not None else None,
        params=_infer_params(params) if params else None,
    )


def infer_schema(data: Any) -> Schema:
    np = _numpy()
    pd = _pandas()
    if pd is not None and isinstance(data, pd.DataFrame):
        return Schema([ColSpec(_column_type(data[c]), str(c)) for c in data.columns])
    if pd is not None and isinstance(data, pd.Series):
        return Schema([ColSpec(_column_type(data), _series_name(data))])
    if isinstance(data, np.ndarray):
        return Schema([_tensor(data)])
    if isinstance(data, Mapping):
        if all(isinstance(v, np.ndarray) for v in data.values()):
            return Schema([_tensor(v, str(k)) for k, v in data.items()])
        return Schema([ColSpec(_value_type(v, str(k)), str(k)) for k, v in data.items()])
    if isinstance(data, (list, tuple)):
        if not data:
            raise InvalidInput("cannot infer a signature from an empty list")
        if all(isinstance(row, Mapping) for row in data):
            if pd is not None:
                return infer_schema(pd.DataFrame(list(data)))
            keys = list(dict.fromkeys(k for row in data for k in row))
            return Schema([ColSpec(_value_type(data[0].get(k), str(k)), str(k)) for k in keys])
        if all(isinstance(v, (str, bytes, bool, int, float)) for v in data):
            return Schema([ColSpec(_value_type(data[0], "list"))])
        return Schema([_tensor(np.asarray(data))])
    if isinstance(data, (str, bytes, bool, int, float)):
        return Schema([ColSpec(_value_type(data, "value"))])
    raise InvalidInput(
        f"cannot infer a signature from {type(data).__name__}; give a pandas DataFrame, "
        "a numpy array, a list or a dict"
    )


def _series_name(series: Any) -> str | None:
    return str(series.name) if series.name is not None else None


def _tensor(array: Any, name: str | None = None) -> TensorSpec:
    if array.dtype.kind in "OUS":
        raise InvalidInput(f"tensor {name or 'input'}: a {array.dtype} array has no tensor type")
    shape = (-1, *array.shape[1:]) if array.ndim else ()
    return TensorSpec(str(array.dtype), tuple(int(d) for d in shape), name)


_KIND_TYPES = {"b": "boolean", "M": "datetime", "U": "string", "S": "binary"}


def _dtype_type(dtype: Any, where: str) -> str | None:
    kind, size = dtype.kind, dtype.itemsize
    if kind in _KIND_TYPES:
        return _KIND_TYPES[kind]
    if kind == "i":
        return "integer" if size <= 4 else "long"
    if kind == "u":
        if size <= 2:
            return "integer"
        if size <= 4:
            return "long"
        raise InvalidInput(f"{where}: uint64 does not fit MLflow's long; cast it first")
    if kind == "f":
        return "float" if size <= 4 else "double"
    return None


def _column_type(series: Any) -> str:
    where = f"column {series.name!r}"
    if _is_string_dtype(series.dtype):
        return "string"
    found = _dtype_type(_numpy_dtype(series.dtype), where)
    if found is not None:
        return found
    values = [v for v in series.tolist() if v is not None]
    if not values:
        raise InvalidInput(f"{where}: every value is missing, so its type is unknown")
    return _value_type(values[0], where)


def _is_string_dtype(dtype: Any) -> bool:
    # pandas 3 gives string columns a StringDtype, not numpy's object.
    return not isinstance(dtype, _numpy().dtype) and str(dtype) in ("string", "str")


def _numpy_dtype(dtype: Any) -> Any:
    """The numpy dtype behind a pandas extension dtype (Int64, Float64, boolean…)."""
    np = _numpy()
    if isinstance(dtype, np.dtype):
        return dtype
    return getattr(dtype, "numpy_dtype", np.dtype(object))


def _value_type(value: Any, where: str) -> str:
    np = _numpy()
    if isinstance(value, np.generic):
        found = _dtype_type(value.dtype, where)
        if found is not None:
            return found
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "binary"
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, (list, np.ndarray)) and len(value):
        # MLflow would write an array type; gitml keeps the element type (see README).
        return _value_type(value[0], where)
    raise InvalidInput(f"{where}: values of type {type(value).__name__} have no MLflow type")


def _infer_params(params: Mapping[str, Any]) -> ParamSchema:
    specs = []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            specs.append(
                ParamSpec(name, _value_type(value[0], f"param {name!r}"), list(value), (-1,))
            )
        else:
            specs.append(ParamSpec(name, _value_type(value, f"param {name!r}"), value))
    return ParamSchema(specs)


# -- enforcement ----------------------------------------------------------------


def enforce(schema: Schema, data: Any) -> Any:
    """``data`` converted to what ``schema`` describes, or ``InvalidInput`` naming the fault.

    Column schemas give a pandas DataFrame with the schema's columns in order
    (extra columns are dropped, as MLflow does); tensor schemas give a numpy
    array (or a dict of them, for named tensors).
    """
    if not schema.inputs:
        return data
    fast = _fast_path(schema, data)
    if fast is not None:
        return fast
    if schema.is_tensor_spec():
        return _enforce_tensors(schema, data)
    return _enforce_columns(schema, data)


def _fast_path(schema: Schema, data: Any) -> Any:
    """``data`` itself when it already is what ``schema`` describes, else None.

    The common serving case: a DataFrame whose columns are exactly the schema's,
    in order, with the schema's numeric dtypes, or a numpy array with a single
    unnamed tensor spec's dtype and shape. Vectorised checks only, no copy.
    """
    np = _numpy()
    if np is None:
        return None
    inputs = schema.inputs
    if isinstance(data, np.ndarray):
        if len(inputs) != 1 or not isinstance(inputs[0], TensorSpec):
            return None
        tensor = inputs[0]
        if tensor.name is not None or data.dtype != np.dtype(tensor.dtype) or not tensor.shape:
            return None
        shape = tensor.shape
        if data.ndim != len(shape) or any(
            w != -1 and w != h for w, h in zip(shape, data.shape, strict=True)
        ):
            return None
        return data
    pd = _pandas()
    if pd is None or type(data) is not pd.DataFrame:
        return None
    columns = list(data.columns)
    if len(columns) != len(inputs):
        return None
    dtypes = data.dtypes.tolist()
    for spec, column, dtype in zip(inputs, columns, dtypes, strict=True):
        if not isinstance(spec, ColSpec) or spec.name is None or spec.name != column:
            return None
        if isinstance(dtype, np.dtype) and dtype.name == _FAST_NUMERIC.get(spec.type):
            continue
        return None
    return data


_FAST_NUMERIC = {
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "boolean": "bool",
}


def _enforce_columns(schema: Schema, data: Any) -> Any:
    np = _numpy()
    pd = _pandas()
    if pd is None:
        raise InvalidInput("column-based signatures need pandas: pip install 'gitml[pandas]'")
    specs = [s for s in schema.inputs if isinstance(s, ColSpec)]
    names = [s.name for s in specs]
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, pd.Series):
        frame = data.to_frame()
    elif isinstance(data, Mapping):
        frame = pd.DataFrame(
            {k: (v if isinstance(v, (list, np.ndarray)) else [v]) for k, v in data.items()}
        )
    elif isinstance(data, (list, np.ndarray)):
        frame = pd.DataFrame(data)
        if not all(isinstance(row, Mapping) for row in data) and None not in names:
            # Rows given by position: name the columns as the schema does.
            if len(frame.columns) != len(names):
                raise InvalidInput(
                    f"input has {len(frame.columns)} columns by position; "
                    f"the model expects {len(names)}: {names}"
                )
            frame.columns = names
    else:
        frame = pd.DataFrame([data])
    if None in names:  # one unnamed column: the first column of the input, whatever its name
        if frame.shape[1] < 1:
            raise InvalidInput("input has no columns; the model expects one")
        frame = frame.iloc[:, :1]
        return _convert(frame, frame.columns[0], specs[0])
    missing = [s.name for s in specs if s.required and s.name not in frame.columns]
    if missing:
        raise InvalidInput(f"input is missing columns {missing}; the model expects {names}")
    present = [s for s in specs if s.name in frame.columns]
    out = frame[[s.name for s in present]].copy()
    for spec in present:
        out = _convert(out, spec.name, spec)
    return out


def _convert(frame: Any, column: Any, spec: ColSpec) -> Any:
    np = _numpy()
    values = frame[column]
    is_text = _is_string_dtype(values.dtype)
    have = np.dtype(object) if is_text else _numpy_dtype(values.dtype)
    want = np.dtype(DATA_TYPES[spec.type])
    fault = f"column {column!r}: expected {spec.type}, got {have}"
    if spec.type in ("string", "binary"):
        kind = str if spec.type == "string" else bytes
        if have.kind in "OUS":
            bad = [v for v in values.tolist() if v is not None and not isinstance(v, kind)]
            if not bad:
                return frame
            fault = f"column {column!r}: expected {spec.type}, got a {type(bad[0]).__name__}"
        raise InvalidInput(fault)
    if spec.type == "datetime":
        if have.kind == "M":
            return frame
        raise InvalidInput(fault)
    if have == want:
        return frame
    if have.kind == "O":
        raise InvalidInput(fault)
    # Safe casts only (int32 -> int64, float32 -> float64, int -> float for JSON
    # clients that send 5 for 5.0); never float -> int, never a narrowing.
    lossless_int_to_float = have.kind in "iu" and want.kind == "f"
    if not (np.can_cast(have, want, "safe") or lossless_int_to_float):
        raise InvalidInput(fault + "; this would lose information")
    frame[column] = values.astype(want)
    return frame


def _enforce_tensors(schema: Schema, data: Any) -> Any:
    np = _numpy()
    pd = _pandas()
    specs = [s for s in schema.inputs if isinstance(s, TensorSpec)]
    if (len(specs) == 1 and specs[0].name is None) or not schema.has_input_names():
        spec = specs[0]
        if pd is not None and isinstance(data, pd.DataFrame):
            data = data.to_numpy()
        return _tensor_value(np.asarray(data) if not isinstance(data, np.ndarray) else data, spec)
    if not isinstance(data, Mapping):
        if len(specs) == 1:
            return {specs[0].name: _tensor_value(np.asarray(data), specs[0])}
        raise InvalidInput(f"input must be a dict of tensors {[s.name for s in specs]}")
    missing = [s.name for s in specs if s.name not in data]
    if missing:
        raise InvalidInput(f"input is missing tensors {missing}")
    return {s.name: _tensor_value(np.asarray(data[s.name]), s) for s in specs}


def _tensor_value(array: Any, spec: TensorSpec) -> Any:
    np = _numpy()
    label = f"tensor {spec.name!r}" if spec.name else "tensor input"
    want = np.dtype(spec.dtype)
    if array.dtype != want:
        lossless_int_to_float = array.dtype.kind in "iu" and want.kind == "f"
        if not (np.can_cast(array.dtype, want, "safe") or lossless_int_to_float):
            raise InvalidInput(f"{label}: expected dtype {want}, got {array.dtype}")
        array = array.astype(want)
    if spec.shape:
        if array.ndim == len(spec.shape) - 1 and spec.shape[0] == -1:
            array = array.reshape((1, *array.shape))  # one example without the batch axis
        ok = array.ndim == len(spec.shape) and all(
            w in (-1, h) for w, h in zip(spec.shape, array.shape, strict=True)
        )
        if not ok:
            raise InvalidInput(
                f"{label}: expected shape {list(spec.shape)}, got {list(array.shape)}"
            )
    return array


def enforce_params(schema: ParamSchema | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Declared params with defaults filled in; unknown params are dropped, as MLflow does."""
    if schema is None:
        return dict(params or {})
    given = dict(params or {})
    out: dict[str, Any] = {}
    for spec in schema.params:
        value = given.get(spec.name, spec.default)
        if spec.name in given and spec.shape is None and not _param_ok(spec.type, value):
            raise InvalidInput(
                f"param {spec.name!r}: expected {spec.type}, got {type(value).__name__}"
            )
        out[spec.name] = value
    return out


def _param_ok(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind in ("integer", "long"):
        return isinstance(value, int)
    if kind in ("float", "double"):
        return isinstance(value, (int, float))
    if kind == "string":
        return isinstance(value, str)
    return True


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with every flavor
        raise InvalidInput("signatures need numpy: pip install 'gitml[sklearn]'") from None
    return numpy


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        return None
    return pandas

"""Input rules, as strict as MLflow's (``mlflow/utils/validation.py`` documents them).

Every check raises ``InvalidInput`` naming the key and the rule it broke.
"""

from __future__ import annotations

import numbers
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from gitml.errors import InvalidInput

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_RUN_NAME_LENGTH = 250
MAX_EXPERIMENT_NAME_LENGTH = 500
# Steps and timestamps are SQLite INTEGERs in the query index (and int64 in MLflow's protocol).
MAX_INTEGER = 2**63 - 1
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

# \Z, not $: "$" also matches before a final newline, which would break the journal.
_KEY = re.compile(r"^[/\w.\- :]+\Z")

# Keys already checked in this process: the metric hot path checks a key once.
_valid_keys: set[str] = set()


def key(kind: str, name: Any) -> str:
    """A param, metric or tag name: MLflow's alphabet, a clean relative path, 250 chars."""
    if not isinstance(name, str):  # before the cache lookup: a list or dict is unhashable
        raise InvalidInput(f"{kind} key must be a string, got {type(name).__name__} {name!r}")
    if name in _valid_keys:
        return name
    if not name:
        raise InvalidInput(f"{kind} key must not be empty")
    if len(name) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key '{name[:40]}...' is {len(name)} characters; the limit is {MAX_KEY_LENGTH}"
        )
    if not _KEY.match(name):
        raise InvalidInput(
            f"invalid {kind} key {name!r}: names may only contain alphanumerics, "
            "underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)"
        )
    if (
        posixpath.normpath(name) != name
        or name.startswith("/")
        or set(name) <= {"."}
        or ".." in name.split("/")  # normpath keeps a leading "../"
    ):
        raise InvalidInput(
            f"invalid {kind} key {name!r}: it must be a plain relative path "
            "(no leading '/', no '..', '.', or '//' components)"
        )
    _valid_keys.add(name)
    return name


def unicode_text(what: str, value: str) -> str:
    """``value`` as it can be stored: UTF-8 encodable.

    A lone surrogate (what ``os.listdir`` and ``sys.argv`` give for bytes that
    are not UTF-8) cannot be written to a YAML record, a commit or SQLite: one
    such value would make every query over the repository fail.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} holds {value[exc.start]!r} at position {exc.start}, which is not "
            "valid Unicode text (a name read in another encoding?); decode it first"
        ) from None
    return value


def param_value(name: str, value: Any) -> str:
    return _bounded_text(f"param '{name}' value", value, MAX_PARAM_VALUE_LENGTH)


def tag_value(name: str, value: Any) -> str:
    return _bounded_text(f"tag '{name}' value", value, MAX_TAG_VALUE_LENGTH)


def _bounded_text(what: str, value: Any, limit: int) -> str:
    text = unicode_text(what, str(value))
    if len(text) > limit:
        raise InvalidInput(f"{what} is {len(text)} characters; the limit is {limit}")
    return text


def params(values: Mapping[str, Any]) -> dict[str, str]:
    """Params as stored: keys checked, values as text within the limit."""
    return {key("param", k): param_value(k, v) for k, v in values.items()}


def tags(values: Mapping[str, Any]) -> dict[str, str]:
    """Tags as stored: keys checked, values as text within the limit."""
    return {key("tag", k): tag_value(k, v) for k, v in values.items()}


def metric_value(name: str, value: Any) -> float:
    """Any real number; NaN and +/-inf are kept as they are (MLflow stores them too)."""
    if isinstance(value, float):
        return value
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:
            raise InvalidInput(
                f"metric '{name}' value is beyond a 64-bit float's range (about 1.8e308)"
            ) from None
    raise InvalidInput(
        f"metric '{name}' value must be a number, got {type(value).__name__} {value!r}"
    )


def step(name: str, value: Any) -> int:
    if type(value) is int and 0 <= value <= MAX_INTEGER:
        return value  # the common case, without the ABC checks (a third of an import's time)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInput(f"metric '{name}' step must be an integer, got {value!r}")
    return _int64(f"metric '{name}' step", value)


def timestamp(name: str, value: Any) -> int:
    if type(value) is int and 0 <= value <= MAX_INTEGER:
        return value  # as in step()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInput(
            f"metric '{name}' timestamp must be an integer (milliseconds since the epoch), "
            f"got {value!r}"
        )
    return _int64(f"metric '{name}' timestamp", value)


def _int64(what: str, value: numbers.Integral) -> int:
    """0 to 2**63 - 1: what an SQLite INTEGER (the query index) and MLflow's int64 hold."""
    number = int(value)
    # str() of an int of more than 4,300 digits raises ValueError.
    shown = str(number) if abs(number) < 10**30 else f"a {number.bit_length()}-bit integer"
    if number < 0:
        raise InvalidInput(f"{what} must not be negative, got {shown}")
    if number > MAX_INTEGER:
        raise InvalidInput(f"{what} is over the limit of 2**63 - 1, got {shown}")
    return number


def run_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"run name must be a non-empty string, got {name!r}")
    if len(name) > MAX_RUN_NAME_LENGTH:
        raise InvalidInput(
            f"run name is {len(name)} characters; the limit is {MAX_RUN_NAME_LENGTH}"
        )
    return unicode_text("run name", name)


def experiment_name(name: Any) -> str:
    """A non-empty line of text: the name is also the subject of the commit creating it."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"experiment name must be a non-empty string, got {name!r}")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidInput(
            f"experiment name is {len(name)} characters; the limit is {MAX_EXPERIMENT_NAME_LENGTH}"
        )
    if any(c in name for c in "\0\n\r"):
        raise InvalidInput(
            f"experiment name {name!r} holds a NUL or a line break; give it on one line"
        )
    return unicode_text("experiment name", name)


def unique(kind: str, keys: Iterable[str]) -> None:
    """MLflow rejects a batch that names the same param or tag twice."""
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            raise InvalidInput(f"duplicate {kind} key '{k}' in one batch")
        seen.add(k)


def batch_size(metrics: int, params: int, tags: int) -> None:
    if metrics > MAX_METRICS_PER_BATCH:
        raise InvalidInput(
            f"a batch may hold at most {MAX_METRICS_PER_BATCH} metrics, got {metrics}"
        )
    if params > MAX_PARAMS_TAGS_PER_BATCH:
        raise InvalidInput(
            f"a batch may hold at most {MAX_PARAMS_TAGS_PER_BATCH} params, got {params}"
        )
    if tags > MAX_PARAMS_TAGS_PER_BATCH:
        raise InvalidInput(f"a batch may hold at most {MAX_PARAMS_TAGS_PER_BATCH} tags, got {tags}")
    if metrics + params + tags > MAX_ENTITIES_PER_BATCH:
        raise InvalidInput(
            f"a batch may hold at most {MAX_ENTITIES_PER_BATCH} metrics, params and tags in all"
        )

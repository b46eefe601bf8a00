"""Canonical YAML in and out.

Records are dumped in the key order their model declares (the caller passes
an ordered mapping) with free-form maps (params, tags) sorted, block style and
no aliases, so that a change to one value is a one-line diff in a pull request.
"""

from __future__ import annotations

from typing import Any

import yaml

_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(data: Any) -> bytes:
    """Serialise ``data`` (already in canonical order) as UTF-8 YAML."""
    text: str = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )
    return text.encode("utf-8")


def load(data: bytes | str) -> Any:
    """Parse YAML safely; never constructs arbitrary Python objects."""
    return yaml.load(data, Loader=_Loader)

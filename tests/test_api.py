"""The public surface: exactly the intended names, each resolvable, as mypy sees them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gitml

PUBLIC = {
    # tracking, the fluent API
    "ActiveRun",
    "active_run",
    "end_run",
    "get_run",
    "get_tracking_uri",
    "last_active_run_id",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
    # explicit control and its values
    "Client",
    "Metric",
    "Param",
    "RunTag",
    "Run",
    "Experiment",
    # the registry
    "register_model",
    "Registry",
    "RegisteredModel",
    "ModelVersion",
    # errors
    "GitmlError",
    "Conflict",
    "Corrupt",
    "InvalidInput",
    "InvalidRecord",
    "NotARepository",
    "NotFound",
    "__version__",
}


def test_all_is_exactly_the_public_names() -> None:
    assert len(gitml.__all__) == len(set(gitml.__all__))
    assert set(gitml.__all__) == PUBLIC
    assert sorted(dir(gitml)) == sorted(PUBLIC)


def test_what_mypy_sees_is_the_table_of_public_names() -> None:
    """The ``if TYPE_CHECKING:`` imports re-export each name of the table from its module."""
    tree = ast.parse(Path(gitml.__file__).read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    seen = {}
    for statement in block.body:
        assert isinstance(statement, ast.ImportFrom) and statement.module is not None
        for alias in statement.names:
            assert alias.asname == alias.name, f"{alias.name} is not re-exported"
            seen[alias.name] = statement.module
    assert seen == gitml._WHERE
    assert set(gitml.__all__) == {*gitml._WHERE, "__version__"}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(gitml, name)
    assert value is not None
    if name != "__version__":
        assert value.__module__.startswith("gitml.")


def test_errors_form_one_tree() -> None:
    for name in ("Conflict", "Corrupt", "InvalidInput", "InvalidRecord", "NotARepository"):
        assert issubclass(getattr(gitml, name), gitml.GitmlError)
    assert issubclass(gitml.NotFound, gitml.GitmlError)
    assert issubclass(gitml.GitmlError, Exception)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = gitml.no_such_thing


def test_version_is_a_string() -> None:
    assert isinstance(gitml.__version__, str) and gitml.__version__[0].isdigit()

"""The tracking server's OpenAPI document against the implementation, by schemathesis:
generated requests for every operation, answers checked against the document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from gitml.server.tracking_app import PREFIX, ServerSettings, create_app


@pytest.fixture
def api_schema(repo: Path) -> Any:
    app = create_app(ServerSettings(repo=repo))
    return schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", app)


# The web UI's own routes are tested with the UI (tests/ui).
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex="/ui/")


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_every_operation_answers_as_documented(case: Any) -> None:
    """Generated requests for every operation: no 5xx, and answers match the document.

    Left out: schemathesis's expectation that every schema-valid body is
    accepted (the API also checks what a schema cannot say: a key's alphabet,
    the filter grammar, that a run exists) and its checks of 405 answers to
    methods no route declares (Starlette's own ``Allow`` header).
    """
    from schemathesis import checks

    case.call_and_validate(
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
            checks.negative_data_rejection,
        ]
    )

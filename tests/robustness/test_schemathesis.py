"""schemathesis against the OpenAPI document the running server serves: every operation, no 5xx,
and every response matches its documented schema (body and content type).

One test per operation, listed from the committed openapi.yaml (which the contract test keeps
equal to what the app serves), so a new endpoint is fuzzed without touching this file. The
operation itself is taken from the schema fetched from the server. Bounded for CI: a few
derandomised examples per operation and generation mode; the negative mode sends inputs that
break the schema on purpose, which must get a 4xx, never a 5xx.

(schemathesis' own ``pytest.from_fixture`` loader does not run under pytest 9, so the Hypothesis
test is built here from ``APIOperation.as_strategy``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# A full KB rebuild embeds every entry (35-60 s on the 2-core CI box): not fuzzed, its one input
# (none) is covered by tests/service/test_service_rest.py.
SKIP = {("POST", "/v1/kb/reindex")}

_DOC = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text(encoding="utf-8"))
OPERATIONS = [(method.upper(), path) for path, item in _DOC["paths"].items() for method in item
              if (method.upper(), path) not in SKIP]


_SENT: list[str] = []  # one entry per request, for the summary line (pytest -s shows it)


@pytest.fixture(scope="module")
def api_schema(server: Any) -> Iterator[Any]:
    yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    print(f"schemathesis: {len(_SENT)} requests over {len(set(_SENT))} operation x mode pairs")


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_without_5xx_and_as_documented(api_schema: Any, server: Any, method: str, path: str,
                                                         mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _SENT.append(f"{method} {path} {mode.value}")
        case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=60)

    try:
        run()
    except Unsatisfiable:
        # No parameters, or only unconstrained strings: there is no input that breaks the schema.
        pytest.skip(f"no schema-violating input exists for {method} {path}")

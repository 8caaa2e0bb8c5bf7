"""The OpenAPI document tells the truth about errors: every operation lists the ones any route can answer, as
problem+json, so clients and the fuzzer (tests/api/test_fuzz.py) know what to expect from a route added later."""

from __future__ import annotations

from api.docs import EVERY_ROUTE, KEYED_ROUTE
from api.errors import PROBLEM
from core.settings import Settings
from nudge.app import create_app

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def test_every_operation_documents_its_errors_as_problem_json() -> None:
    spec = create_app(Settings()).openapi()
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            expected = EVERY_ROUTE | (KEYED_ROUTE if operation.get("security") else {})
            for status in expected:
                if status == 503 and path == "/healthz":
                    continue  # it says which dependency is down, in its own body
                response = operation["responses"].get(str(status), {})
                if response.get("content", {}).get(PROBLEM, {}).get("schema") != PROBLEM_REF:
                    missing.append(f"{method.upper()} {path} {status}")
                elif status in (429, 503) and "Retry-After" not in response.get("headers", {}):
                    missing.append(f"{method.upper()} {path} {status} without Retry-After")
    assert not missing, "errors not documented as problem+json:\n" + "\n".join(missing)
    assert "HTTPValidationError" not in str(spec), "FastAPI's own 422 body is documented, but the app sends a Problem"


def test_a_routes_own_error_keeps_its_meaning_and_gets_the_problem_body() -> None:
    responses = create_app(Settings()).openapi()["paths"]["/v1/segments/{segment_id}"]["delete"]["responses"]
    assert responses["409"]["description"] == "Other segments' rules name it; the detail lists them"
    assert responses["409"]["content"] == {PROBLEM: {"schema": PROBLEM_REF}}

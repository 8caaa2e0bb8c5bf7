"""The API documentation: the OpenAPI document's error answers (problem+json, on every operation), and the pages,
Swagger UI at /docs and ReDoc at /redoc, served from files shipped in the package (api/static/vendor, with their
licences), so they work without internet access."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.errors import PROBLEM

ASSETS = "/docs-assets"
VENDOR = Path(__file__).parent / "static" / "vendor"

# The errors any route answers, whoever wrote it: the input layer (api/hygiene.py) refuses a bad parameter or body,
# or one too large, before the route runs, and an outage is a 503 on every route (api/errors.py).
EVERY_ROUTE = {
    400: "Malformed input: a NUL or lone surrogate in a string, NaN, JSON nested too deep, a body that does not "
         "parse; `errors` names the field",
    413: "The body is larger than this endpoint's limit",
    503: "A dependency (Postgres, Temporal) did not answer; send the same request again after Retry-After seconds",
}
# And those of every route behind an API key: the key check, the rate limit, and the domain's refusals.
KEYED_ROUTE = {
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks the scope this endpoint needs",
    404: "Something the request names does not exist",
    409: "The request conflicts with the current state",
    422: "Invalid request: `errors` names each field to fix",
    429: "Too many requests for this key; send again after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before sending the request again",
                               "schema": {"type": "integer"}}}
PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "An error, as RFC 9457 problem details: `detail` says what to do.",
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            "required": ["field", "message"]}},
    },
    "required": ["type", "title", "status", "detail"],
}
FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"  # FastAPI's own 422, which the app never sends


def document_problems(app: FastAPI) -> None:
    """Add the errors every route can answer to each operation of the app's OpenAPI, as problem+json: routes
    declare only their own answers (a 409 with its meaning), and one declared without a body gets this one."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _add_problems(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problems(schema: dict[str, Any]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    body = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            errors = EVERY_ROUTE | (KEYED_ROUTE if operation.get("security") else {})
            for status, description in sorted(errors.items()):
                declared = responses.get(str(status))
                if declared is None or _is_fastapi_validation(declared):
                    declared = responses[str(status)] = {"description": description}
                if "content" not in declared:  # a route's own description, with the body every error has
                    declared["content"] = body
                if status in (429, 503):
                    declared.setdefault("headers", RETRY_AFTER)
            operation["responses"] = dict(sorted(responses.items()))
    if FASTAPI_VALIDATION not in str(schema["paths"]):  # no operation refers to them any more
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    content = response.get("content", {}).get("application/json", {})
    return content.get("schema", {}).get("$ref") == FASTAPI_VALIDATION


def install(app: FastAPI) -> None:
    """Document the errors and serve /docs and /redoc; the app must be created with `docs_url=None, redoc_url=None`."""
    document_problems(app)
    app.mount(ASSETS, StaticFiles(directory=VENDOR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})  # the default badge asks validator.swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} — API reference",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS}/favicon-32x32.png", with_google_fonts=False)

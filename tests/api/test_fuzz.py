"""Schemathesis over the whole OpenAPI of the real app, served over HTTP and signed in with an admin key: no input,
valid or not, gets a server error, and every answer is one the schema describes (status code, content type, body,
problem+json for errors). Every operation the app publishes is fuzzed, so an endpoint added later is too.

The fuzzer creates and launches whatever it likes (risk rules, blocklist entries, expiry runs, campaigns), so it
runs against an app of its own: a throwaway database on the test server and a Temporal namespace of its own, which
no worker polls (the workflows it starts stay pending; what they do is the workflow tests' business). The other
tests' database and namespace are never touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import psycopg
import pytest
import schemathesis
from google.protobuf.duration_pb2 import Duration
from psycopg import sql
from schemathesis import Case
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from api.runtime import create_api_key
from core.settings import Settings
from domain.keys import Scope
from nudge.app import create_app
from nudge.embedded import SEARCH_ATTRIBUTES, free_port
from store.db import plain_url
from store.migrate import upgrade

# The bound: per operation, its documented examples, then this many generated requests (valid and invalid ones
# mixed), derandomized so a failure reproduces, not shrunk. About 600 requests in all, half a minute here.
# Schemathesis' coverage phase (every boundary of every parameter) is left out: ~2,700 more requests, and ~8 s of
# building them at collection, which every run of the suite would pay even when it deselects this module.
EXAMPLES = 10
FUZZING = schemathesis.Config.from_dict({
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "no-shrink": True, "database": "none"},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
    },
})


@pytest.fixture(scope="module")
def fuzz_database(database_url: str) -> Iterator[str]:
    """A migrated database of the fuzzer's own on the test server, dropped afterwards."""
    server = plain_url(database_url).rsplit("/", 1)[0]
    name = f"nudge_fuzz_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        upgrade(f"{server}/{name}")
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
async def fuzz_namespace(temporal_client: Client) -> str:
    """A Temporal namespace of the fuzzer's own on the test server, with Nudge's search attributes."""
    name = f"nudge-fuzz-{uuid.uuid4().hex[:8]}"
    await temporal_client.workflow_service.register_namespace(RegisterNamespaceRequest(
        namespace=name, workflow_execution_retention_period=Duration(seconds=24 * 3600)))
    await temporal_client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=name, search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in SEARCH_ATTRIBUTES}))
    return name


@pytest.fixture(scope="module")
async def fuzz_keys(fuzz_database: str) -> dict[Scope, str]:
    key = await create_api_key(fuzz_database, "fuzz admin", [Scope.ADMIN])
    assert key is not None
    return {Scope.ADMIN: key}


@pytest.fixture(scope="module")
def fuzz_api_url(settings: Settings, fuzz_database: str, fuzz_namespace: str, fuzz_keys: dict[Scope, str],
                 serve_api: Callable[[Settings], AbstractContextManager[str]]) -> Iterator[str]:
    """The app on its own database and namespace, holding the world the documented examples name."""
    own = settings.model_copy(update={"database_url": fuzz_database, "temporal_namespace": fuzz_namespace,
                                      "api_port": free_port()})
    with serve_api(own) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {fuzz_keys[Scope.ADMIN]}"}) as client:
            seed(client)
        yield url


def seed(client: httpx.Client) -> None:
    """What the OpenAPI examples refer to: contacts 1-42, segment 1, campaign 1, program 1, rewards 1-7 and points
    for contact 42. Schemathesis sends those examples first and favours small ids after, so requests reach past
    the "does not exist" checks into the handlers."""
    def create(path: str, body: dict[str, object]) -> None:
        r = client.post(path, json=body)
        assert r.is_success, (path, r.status_code, r.text)

    for n in range(1, 43):
        create("/v1/contacts", {"user_id": f"seed-{n}", "email": f"seed-{n}@example.com", "traits": {"plan": "pro"}})
    create("/v1/segments", {"name": "Seed", "kind": "manual", "contact_ids": [1, 2, 3]})
    create("/v1/campaigns", {"name": "Seed", "subject": "Hi {{ contact.first_name | default('there') }}",
                             "body": "Seed", "audience": {"contact_ids": [1, 2, 3]}})
    create("/v1/ledger/programs", {"name": "Seed", "unit": "coins"})
    for n in range(1, 8):
        create("/v1/ledger/rewards", {"program_id": 1, "name": f"Seed {n}", "cost": 300, "stock": 500})
    create("/v1/ledger/postings", {"program_id": 1, "reference": "seed", "kind": "credit", "contact_id": 42,
                                   "amount": 100_000})


# Read from the app at collection, so each operation is a test of its own (a schema loaded from a fixture,
# `schemathesis.pytest.from_fixture`, fails under pytest 9.2: it renames nodes through `Node._nodeid`, which is
# gone). It is the schema `fuzz_api_url` serves: the same create_app, whatever the settings.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=FUZZING)


@schema.parametrize()
# pytest 9.2 builds node ids from `parametrize` ids only, which would give every operation's test the same one;
# with this parametrization each is named for its operation: test_…[GET /v1/contacts][admin].
@pytest.mark.parametrize("scope", [Scope.ADMIN], ids=str)
def test_no_input_gets_a_server_error_or_an_answer_the_schema_does_not_describe(
        case: Case, scope: Scope, fuzz_api_url: str, fuzz_keys: dict[Scope, str]) -> None:
    case.call_and_validate(base_url=fuzz_api_url, headers={"Authorization": f"Bearer {fuzz_keys[scope]}"})

"""The input-hygiene layer on every route, through the real server: a malformed key, a NUL or a lone surrogate in
any string, an integer past its column, JSON nested too deep, a body past its route's cap. Each answers a clear 4xx
in problem+json naming the field, and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import errors
from api.hygiene import DEFAULT_MAX_BODY, Hygiene
from api.params import ID_MAX
from domain.hygiene import MAX_DEPTH

BAD_KEY = "nk_ab\x00cd_" + "x" * 32
SignIn = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]  # the `dashboard_sign_in` fixture


def _tag() -> str:
    return f"hyg-{uuid.uuid4().hex[:10]}"


def _refused(r: httpx.Response, status: int, field: str) -> None:
    """A problem+json with this status whose errors (or detail) name `field`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers
    problem = r.json()
    named = [e["field"] for e in problem.get("errors", [])] or [problem["detail"]]
    assert any(n.startswith(field) for n in named), (field, problem)


async def _count(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    async with sessions() as s:
        return int((await s.execute(text(sql), params)).scalar_one())


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


# --- 1. keys --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/contacts", None),
    ("POST", "/v1/contacts", {"user_id": "x"}),
    ("GET", "/v1/ledger/programs", None),
    ("POST", "/v1/track", {"userId": "u", "event": "e"}),  # the tracking API's fast path and write-key cache
    ("POST", "/v1/batch", {"batch": []}),
])
async def test_a_key_with_a_nul_is_a_401_as_basic_user_bearer_or_cookie(anon_api: httpx.AsyncClient, method: str,
                                                                         path: str, body: Any) -> None:
    basic = base64.b64encode(f"{BAD_KEY}:".encode()).decode()
    for headers in ({"Authorization": f"Basic {basic}"},
                    {"Authorization": "Bearer nk_ab%00cd_" + "x" * 32},
                    {"Cookie": 'nudge_key="nk_ab\\000cd_xxxxxxxx"'}):  # a quoted cookie's octal escape is a NUL
        r = await anon_api.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"


async def test_a_nul_in_the_dashboard_sign_in_form_or_cookie_signs_nobody_in(
        anon_api: httpx.AsyncClient, dashboard_sign_in: SignIn) -> None:
    r = await dashboard_sign_in(anon_api, "nk_ab\0cd_xxxxxxxx")  # the form posts key=nk_ab%00cd_… and its token
    assert r.status_code == 200 and "unknown" in r.text and "set-cookie" not in r.headers
    page = await anon_api.get("/dashboards/campaigns", headers={"Cookie": 'nudge_key="nk_ab\\000cd_xxxxxxxx"'})
    assert page.status_code == 303 and page.headers["location"] == "/dashboards/login"


# --- 2. NUL characters and lone surrogates --------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ('{"userId": "nul\\u0000user", "event": "e", "messageId": "%s"}', "userId"),
    ('{"userId": "u-%s", "event": "e\\u0000", "messageId": "%s"}', "event"),
    ('{"userId": "u", "event": "e", "properties": {"k\\u0000": 1}, "messageId": "%s"}', "properties"),
    ('{"userId": "u", "event": "e", "properties": {"k": ["v\\u0000"]}, "messageId": "%s"}', "properties.k.0"),
    ('{"userId": "u", "event": "e", "context": {"ip": "\\u0000"}, "messageId": "%s"}', "context.ip"),
    ('{"userId": "\\ud800", "event": "e", "messageId": "%s"}', "userId"),
    ('{"userId": "u", "event": "e", "properties": {"\\udfff": 1}, "messageId": "%s"}', "properties"),
])
async def test_a_nul_or_lone_surrogate_in_a_tracking_call_is_a_400_naming_it(
        ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], body: str, field: str) -> None:
    message_id = _tag()
    raw = (body % ((message_id,) * body.count("%s"))).encode()
    r = await ingest.post("/v1/track", content=raw, headers={"Content-Type": "application/json"})
    _refused(r, 400, field)
    item = raw.replace(b"{", b'{"type": "track", ', 1)
    batch = b'{"batch": [{"type": "track", "userId": "ok", "event": "ok"}, ' + item + b"]}"
    _refused(await ingest.post("/v1/batch", content=batch, headers={"Content-Type": "application/json"}), 400,
             f"batch.1.{field}")
    assert await _count(sessions, "SELECT count(*) FROM events WHERE message_id = :m", m=message_id) == 0


async def test_identify_traits_with_a_nul_create_no_contact(ingest: httpx.AsyncClient,
                                                            sessions: async_sessionmaker[AsyncSession]) -> None:
    user = _tag()
    r = await ingest.post("/v1/identify", json={"userId": user, "traits": {"email": "a\x00@example.com"}})
    _refused(r, 400, "traits.email")
    assert await _count(sessions, "SELECT count(*) FROM contacts WHERE user_id = :u", u=user) == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "{tag}\x00"}, "user_id"),
    ({"user_id": "{tag}", "traits": {"name": "a\x00b"}}, "traits.name"),
    ({"user_id": "{tag}", "traits": {"na\x00me": 1}}, "traits"),
    ({"user_id": "{tag}", "traits": {"deep": [{"x": "\ud800"}]}}, "traits.deep.0.x"),
    ({"user_id": "{tag}", "traits": {"score": float("nan")}}, "traits.score"),
])
async def test_a_contact_with_a_nul_lone_surrogate_or_nan_is_a_400_and_not_created(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], body: dict[str, Any], field: str) -> None:
    tag = _tag()
    raw = json.dumps(body).replace("{tag}", tag).encode()  # the standard library writes \u0000, \ud800 and NaN
    _refused(await api.post("/v1/contacts", content=raw, headers={"Content-Type": "application/json"}), 400, field)
    assert await _count(sessions, "SELECT count(*) FROM contacts WHERE user_id LIKE :t", t=f"{tag}%") == 0


async def test_a_contact_patch_with_a_nul_changes_nothing(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/contacts", json={"user_id": _tag(), "traits": {"a": 1}})).json()
    _refused(await api.patch(f"/v1/contacts/{created['id']}", json={"traits": {"a": "\x00"}}), 400, "traits.a")
    _refused(await api.patch(f"/v1/contacts/{created['id']}", json={"unset_traits": ["\x00"]}), 400,
             "unset_traits.0")
    assert (await api.get(f"/v1/contacts/{created['id']}")).json()["traits"] == {"a": 1}


async def test_a_segment_rule_with_a_lone_surrogate_is_a_400_and_not_created(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    name = _tag()
    raw = b'{"name": "%s", "rule": {"field": "traits.plan", "op": "eq", "value": "\\ud800"}}' % name.encode()
    _refused(await api.post("/v1/segments", content=raw, headers={"Content-Type": "application/json"}), 400,
             "rule.value")
    preview = b'{"rule": {"field": "traits.plan", "op": "eq", "value": "a\\u0000"}}'
    _refused(await api.post("/v1/segments/preview", content=preview, headers={"Content-Type": "application/json"}),
             400, "rule.value")
    assert await _count(sessions, "SELECT count(*) FROM segments WHERE name = :n", n=name) == 0


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/v1/contacts", {"email": "\x00"}, "query.email"),
    ("/v1/contacts", {"user_id": "a\x00b"}, "query.user_id"),
    ("/v1/contacts", {"identity": "user_id:\x00"}, "query.identity"),
    ("/v1/contacts", {"traits": '{"plan": "\\u0000"}'}, "query.traits.plan"),  # a NUL only once the JSON is read
    ("/v1/contacts", {"traits": '{"plan": "\\ud800"}'}, "query.traits.plan"),
    ("/v1/redemptions/a%00b", {}, "path"),
    ("/v1/ledger/programs/1/postings/ref%00", {}, "path"),
    ("/v1/ledger/reconciliations/ledger-reconcile%00", {}, "path"),
    ("/dashboards/points", {"program": "1\x00"}, "query.program"),
])
async def test_a_nul_in_the_path_or_query_is_a_400_naming_it(api: httpx.AsyncClient, path: str,
                                                              params: dict[str, str], field: str) -> None:
    _refused(await api.get(path, params=params), 400, field)


async def test_blocklist_values_with_a_nul_are_refused_and_nothing_is_blocked(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    tag = _tag()
    _refused(await api.post("/v1/ledger/risk/blocklist", json={"dimension": "device", "value": f"{tag}\x00"}), 400,
             "value")
    _refused(await api.post("/v1/ledger/risk/blocklist", json={"dimension": "device", "value": tag,
                                                               "reason": "\x00"}), 400, "reason")
    _refused(await api.delete(f"/v1/ledger/risk/blocklist/device/{tag}%00"), 400, "path")
    assert await _count(sessions, "SELECT count(*) FROM ledger_blocklist WHERE value LIKE :t", t=f"{tag}%") == 0


async def test_a_posting_reference_with_a_nul_posts_nothing(api: httpx.AsyncClient,
                                                             sessions: async_sessionmaker[AsyncSession]) -> None:
    tag = _tag()
    r = await api.post("/v1/ledger/postings", json={"program_id": 1, "reference": f"{tag}\x00", "kind": "credit",
                                                    "contact_id": 1, "amount": 5})
    _refused(r, 400, "reference")
    assert await _count(sessions, "SELECT count(*) FROM ledger_postings WHERE reference LIKE :t", t=f"{tag}%") == 0


async def _manual_segment(api: httpx.AsyncClient) -> int:
    r = await api.post("/v1/segments", json={"name": _tag(), "kind": "manual"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@pytest.mark.parametrize(("csv", "needle"), [
    ("email\nana@example.com\n".encode("utf-16"), "not UTF-8"),
    (b"email\n\xe9t\xe9@example.com\n", "not UTF-8"),  # Latin-1, not guessed
    (b"user_id\nu-1\nu\x00-2\n", "line 3"),
    (f"contact_id\n{2**63}\n".encode(), "contact_id"),
    ("contact_id\n١٢\n".encode(), "contact_id"),  # Arabic-Indic digits pass str.isdigit
    (b"email\n" + b'"' + b"x" * 200_000 + b'"\n', "line"),  # past the csv module's field limit
])
async def test_a_member_csv_that_is_not_clean_utf8_is_a_422_and_adds_nobody(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], csv: bytes, needle: str) -> None:
    segment = await _manual_segment(api)
    r = await api.post(f"/v1/segments/{segment}/members/csv", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text
    assert await _count(sessions, "SELECT count(*) FROM segment_members WHERE segment_id = :s", s=segment) == 0


# --- 3. integers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "params", "field"), [
    ("GET", "/v1/contacts/6824637570376876949504/events", {}, "path.contact_id"),
    ("GET", "/v1/contacts", {"after": "973823164441386942464"}, "query.after"),
    ("GET", "/v1/contacts/1/events", {"before": f"2026-01-01T00:00:00Z~{2**63}"}, "`before`"),
    ("DELETE", f"/v1/segments/{2**63}", {}, "path.segment_id"),
    ("GET", "/v1/campaigns", {"limit": "-1041370566761"}, "query.limit"),
    ("GET", "/v1/campaigns", {"after": "-1"}, "query.after"),
    ("GET", "/v1/segments/0/members", {}, "path.segment_id"),
    ("GET", "/v1/ledger/accounts/1", {"program_id": str(2**64)}, "query.program_id"),
])
async def test_an_integer_past_its_column_or_a_negative_limit_is_a_422_naming_it(
        api: httpx.AsyncClient, method: str, path: str, params: dict[str, str], field: str) -> None:
    _refused(await api.request(method, path, params=params), 422, field)


async def test_a_dashboard_program_past_bigint_is_a_404_page(api_url: str, admin_key: str,
                                                            dashboard_sign_in: SignIn) -> None:
    async with httpx.AsyncClient(base_url=api_url) as browser:
        await dashboard_sign_in(browser, admin_key)
        r = await browser.get("/dashboards/points", params={"program": str(2**64)})
    assert r.status_code == 404, r.text


async def test_a_segment_id_past_int4_but_within_bigint_is_simply_not_found(api: httpx.AsyncClient) -> None:
    for method in ("DELETE", "GET", "PATCH"):
        r = await api.request(method, "/v1/segments/549755813889", json={"name": "x"} if method == "PATCH" else None)
        assert r.status_code == 404, r.text
    r = await api.post("/v1/segments/549755813889/members", json={"contact_ids": [1]})
    assert r.status_code == 404, r.text


async def test_ids_in_bodies_are_bounded_and_nothing_is_created(api: httpx.AsyncClient,
                                                                sessions: async_sessionmaker[AsyncSession]) -> None:
    name = _tag()
    _refused(await api.post("/v1/segments", json={"name": name, "kind": "manual", "contact_ids": [2**63]}), 422,
             "contact_ids.0")
    _refused(await api.post("/v1/campaigns", json={"name": name, "subject": "s", "body": "b",
                                                   "audience": {"contact_ids": [1, -5]}}), 422,
             "audience.contact_ids.1")
    for rule, field in (({"segment": 2**63}, "rule.segment"),
                        ({"event": "e", "count": {"op": "gte", "value": 2**63}}, "rule.count.value")):
        _refused(await api.post("/v1/segments", json={"name": name, "rule": rule}), 422, field)
    assert await _count(sessions, "SELECT count(*) FROM segments WHERE name = :n", n=name) == 0
    assert await _count(sessions, "SELECT count(*) FROM campaigns WHERE name = :n", n=name) == 0


def _integer_schemas(schema: Any, components: dict[str, Any], where: str,
                     seen: frozenset[str] = frozenset()) -> list[tuple[str, dict[str, Any]]]:
    """Every integer schema inside `schema`, following $refs, with a readable location."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else _integer_schemas(components[name], components, where, seen | {name})
    found = [(where, schema)] if schema.get("type") == "integer" else []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += _integer_schemas(option, components, where, seen)
    for prop, sub in schema.get("properties", {}).items():
        found += _integer_schemas(sub, components, f"{where}.{prop}", seen)
    for key in ("items", "additionalProperties"):
        found += _integer_schemas(schema.get(key), components, f"{where}[]", seen)
    return found


async def test_every_integer_parameter_and_body_field_in_the_api_has_both_bounds(api: httpx.AsyncClient) -> None:
    """New endpoints cannot forget: an unbounded integer reaches Postgres, which refuses it with a 500."""
    spec = (await api.get("/openapi.json")).json()
    components = spec.get("components", {}).get("schemas", {})
    unbounded = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            found = [pair for p in operation.get("parameters", [])
                     for pair in _integer_schemas(p["schema"], components, f"{p['in']}.{p['name']}")]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                found += _integer_schemas(media.get("schema"), components, "body")
            unbounded += [f"{method.upper()} {path} {where}" for where, schema in found
                          if not (-(2**63) <= schema.get("minimum", schema.get("exclusiveMinimum", -(2**64)))
                                  and schema.get("maximum", schema.get("exclusiveMaximum", 2**64)) <= ID_MAX)]
    assert not unbounded, "integers without both bounds:\n" + "\n".join(unbounded)


# --- 4. nesting -----------------------------------------------------------------------------------------------------


async def test_event_properties_nested_too_deep_are_a_400_and_not_stored(
        ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    message_id = _tag()
    for levels in (MAX_DEPTH, 300, 2000):  # within what orjson parses, past what it can store, past what it parses
        properties = '{"a": ' * levels + "1" + "}" * levels
        raw = f'{{"userId": "u", "event": "e", "messageId": "{message_id}", "properties": {properties}}}'
        r = await ingest.post("/v1/track", content=raw.encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "deeper" in r.json()["detail"], r.text
    batch = {"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": message_id,
                        "properties": _nested(300)}]}
    r = await ingest.post("/v1/batch", content=json.dumps(batch).encode(), headers={"Content-Type": "application/json"})
    _refused(r, 400, "batch.0.properties.a")
    assert await _count(sessions, "SELECT count(*) FROM events WHERE message_id = :m", m=message_id) == 0


async def test_properties_nested_within_the_limit_are_stored_and_read_back(ingest: httpx.AsyncClient,
                                                                           api: httpx.AsyncClient) -> None:
    user = _tag()
    properties = _nested(MAX_DEPTH - 2)  # the call object and `properties` itself are two levels
    assert (await ingest.post("/v1/track", json={"userId": user, "event": "e", "properties": properties})
            ).status_code == 200
    contact = (await api.get("/v1/contacts", params={"user_id": user})).json()["items"][0]
    [event] = (await api.get(f"/v1/contacts/{contact['id']}/events")).json()["items"]
    assert event["properties"] == properties


async def test_contact_traits_nested_too_deep_are_a_400_and_not_created(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    user = _tag()
    raw = json.dumps({"user_id": user, "traits": _nested(300)}).encode()
    _refused(await api.post("/v1/contacts", content=raw, headers={"Content-Type": "application/json"}), 400,
             "traits.a")
    assert await _count(sessions, "SELECT count(*) FROM contacts WHERE user_id = :u", u=user) == 0


# --- 6. body caps ---------------------------------------------------------------------------------------------------


async def _declare_only(api_url: str, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send a request's head and none of its body; the answer must come without it."""
    host, port = api_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + b"\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 30)  # a hang guard, not a timing assertion
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status.split()[1]), headers, body
    finally:
        writer.close()


@pytest.mark.parametrize("with_key", [False, True])
async def test_a_64_mb_contact_is_a_413_before_a_byte_of_it_is_read(api_url: str, admin_key: str,
                                                                    with_key: bool) -> None:
    auth = f"Authorization: Bearer {admin_key}\r\n" if with_key else ""
    status, headers, body = await _declare_only(
        api_url, f"POST /v1/contacts HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                 f"Content-Length: {64 * 1024 * 1024}\r\n")
    assert status == 413 and headers["content-type"] == "application/problem+json", body
    assert json.loads(body)["errors"][0]["field"] == "body"


async def test_routes_that_take_more_declare_a_larger_cap(api: httpx.AsyncClient) -> None:
    segment = await _manual_segment(api)
    ids = {"contact_ids": [10**15 + i for i in range(100_000)]}  # unknown contacts: nothing to add
    assert len(json.dumps(ids)) > DEFAULT_MAX_BODY
    r = await api.post(f"/v1/segments/{segment}/members", json=ids)
    assert r.status_code == 200 and r.json()["changed"] == 0, r.text
    csv = b"email\n" + b"".join(b"nobody-%d@example.com\n" % i for i in range(60_000))
    assert len(csv) > DEFAULT_MAX_BODY
    r = await api.post(f"/v1/segments/{segment}/members/csv", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["changed"] == 0, r.text


async def test_a_chunked_body_is_cut_off_at_the_cap_while_streaming() -> None:
    """No Content-Length to refuse up front: the layer counts as the body arrives and stops past the cap."""
    reached: list[Any] = []
    app = FastAPI()
    errors.install(app)

    @app.post("/things")
    async def things(body: dict[str, Any]) -> dict[str, Any]:
        reached.append(body)
        return {}

    app.add_middleware(Hygiene)

    async def chunks(total: int) -> AsyncIterator[bytes]:
        yield b'{"x": "'
        for _ in range(total // 65536):
            yield b"a" * 65536
        yield b'"}'

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        json_type = {"Content-Type": "application/json"}
        r = await client.post("/things", content=chunks(4 * DEFAULT_MAX_BODY), headers=json_type)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json", r.text
        assert reached == []
        small = await client.post("/things", content=chunks(65536), headers=json_type)
        assert small.status_code == 200 and len(reached) == 1
        nul = await client.post("/things", content=b'{"x": "\\u0000"}', headers=json_type)
        _refused(nul, 400, "x")
        assert len(reached) == 1

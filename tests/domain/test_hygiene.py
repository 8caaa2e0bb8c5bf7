"""Input hygiene on raw JSON bytes: NUL characters, lone surrogates, NaN and nesting depth, each named by path."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.hygiene import MAX_DEPTH, BadInput, check_json, check_text, loads, nesting

# Strings full of what confuses a byte scanner: brackets, quotes and backslashes, escaped every way.
tricky = st.text(alphabet=st.sampled_from('ab[]{}"\\/:,\n\x01é😀'), max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | tricky,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky, inner, max_size=4),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


@settings(max_examples=300)
@given(values, st.booleans())
def test_nesting_counted_on_bytes_is_the_depth_of_the_value(value: Any, ascii_only: bool) -> None:
    for raw in (orjson.dumps(value), json.dumps(value, ensure_ascii=ascii_only, indent=1).encode()):
        assert nesting(raw) == min(_depth(value), MAX_DEPTH + 1), raw


def test_nesting_stops_counting_past_the_limit() -> None:
    assert nesting(json.dumps(_nested(500)).encode()) == MAX_DEPTH + 1
    assert nesting(b'{"a": "]]]]}}}}", "b": [[["[[[["]]]}') == 4


def test_json_nested_deeper_than_the_limit_is_refused_naming_where() -> None:
    assert loads(orjson.dumps({"p": _nested(MAX_DEPTH - 1)}))["p"] is not None
    with pytest.raises(BadInput) as caught:
        loads(orjson.dumps({"properties": {"deep": _nested(MAX_DEPTH)}}))
    assert caught.value.field.startswith("properties.deep") and str(MAX_DEPTH) in caught.value.problem
    with pytest.raises(BadInput, match="deeper"):  # beyond what orjson parses at all
        check_json(b"[" * 2000 + b"]" * 2000)
    with pytest.raises(BadInput, match="deeper"):
        loads(b"[" * 2000 + b"]" * 2000)


@pytest.mark.parametrize(("raw", "field"), [
    (rb'{"userId": "nul\u0000user"}', "userId"),
    (rb'{"properties": {"k\u0000": 1}}', "properties"),
    (rb'{"batch": [{}, {"properties": {"v": ["x", "a\u0000"]}}]}', "batch.1.properties.v.1"),
])
def test_a_nul_anywhere_is_refused_naming_its_path(raw: bytes, field: str) -> None:
    for check in (loads, check_json):
        with pytest.raises(BadInput) as caught:
            check(raw)
        assert caught.value.field == field and "NUL" in caught.value.problem


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul() -> None:
    assert loads(rb'{"path": "C:\\u0000"}') == {"path": "C:\\u0000"}
    with pytest.raises(BadInput):
        loads(rb'{"path": "C:\\\u0000"}')


@pytest.mark.parametrize(("raw", "field", "needle"), [
    (rb'{"rule": {"value": "\ud800"}}', "rule.value", "surrogate"),
    (rb'{"traits": {"\udc00x": 1}}', "traits", "key"),
    (b'{"traits": {"score": NaN}}', "traits.score", "NaN"),
    (b'{"amount": 1e999}', "amount", "infinite"),
])
def test_what_a_lenient_parser_accepts_but_postgres_cannot_store_is_refused(raw: bytes, field: str,
                                                                           needle: str) -> None:
    for check in (loads, check_json):
        with pytest.raises(BadInput) as caught:
            check(raw)
        assert caught.value.field == field and needle in caught.value.problem


def test_plain_syntax_errors_are_left_to_the_parser_that_reads_the_body() -> None:
    check_json(b'{"a": ')  # FastAPI answers it with its own 422
    with pytest.raises(BadInput, match="not valid JSON"):
        loads(b'{"a": ')


@given(st.text())
def test_text_is_refused_exactly_when_postgres_could_not_store_it(text: str) -> None:
    storable = "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    try:
        assert check_text(text, "q") == text and storable
    except BadInput as exc:
        assert not storable and exc.field == "q"

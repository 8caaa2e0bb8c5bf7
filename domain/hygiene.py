"""What any input must be before a rule or the database sees it: text Postgres can store (no NUL character, no
lone surrogate, no NaN or infinite number) and JSON nested at most MAX_DEPTH levels.

The checks read the raw bytes with a few C-speed scans, cheap enough for the ingest path; walking the decoded value
to name the offending field happens only once a check has failed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from domain.errors import DomainError

# Real payloads nest a few levels (Mixpanel allows objects 3 deep in event properties; Segment documents no limit).
# 64 leaves room for any of them, stays far below the 254 levels orjson can serialise when events are stored
# (with the envelope a batch or a group call adds), and keeps recursive code over a value (rule checks, templates,
# Pydantic) far from Python's recursion limit. orjson itself parses up to 1,024.
MAX_DEPTH = 64

_NUL_ESCAPE = re.compile(rb"(\\+)u0000")  # a NUL in JSON text can only be written as \u0000
_BRACKETS = bytes.maketrans(b"[]", b"{}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')


class BadInput(DomainError):
    """An input no endpoint may take, whatever its schema: the field it is in and what is wrong with it."""

    status = 400
    title = "Invalid input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    @property
    def errors(self) -> list[dict[str, str]]:
        return [{"field": self.field, "message": self.problem}]


class NotJson(BadInput):
    """Not JSON at all (a syntax error), as opposed to JSON holding what no endpoint may take."""


def text_problem(value: str) -> str | None:
    """Why Postgres cannot store this text, or None."""
    if "\x00" in value:
        return "contains a NUL character, which cannot be stored; remove it"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "contains a lone UTF-16 surrogate, which is not Unicode text; send valid UTF-8"
    return None


def check_text(value: str, field: str) -> str:
    if (problem := text_problem(value)) is not None:
        raise BadInput(field, problem)
    return value


def loads(raw: bytes, field: str = "body") -> Any:
    """Decode JSON, refusing text that cannot be stored and nesting deeper than MAX_DEPTH (BadInput, naming where)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refusal(raw, exc, field) or NotJson(field, f"is not valid JSON: {exc}") from None
    _check(raw, value, field)
    return value


def check_json(raw: bytes, field: str = "body") -> None:
    """For JSON another parser decodes: refuse what a lenient parser accepts but no endpoint may take (a NUL, a lone
    surrogate, NaN, too deep); leave plain syntax errors to that parser, which reports them its own way."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if (refused := _refusal(raw, exc, field)) is not None:
            raise refused from None
        return
    _check(raw, value, field)


def nesting(raw: bytes, limit: int = MAX_DEPTH) -> int:
    """How deep valid JSON text nests (a scalar 0, `{}` 1, `[{}]` 2), at most limit + 1, counted on the bytes.

    Strings are dropped first (after their escaped backslashes and quotes, every quote opens or closes one), then
    every pass strips the innermost brackets, one level each: a few passes over a skeleton of brackets, instead of
    a Python walk over every value."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = raw.translate(_BRACKETS, _NOT_STRUCTURE)  # quotes, and brackets as {}
    if skeleton.count(b'""') * 2 == skeleton.count(b'"'):  # every string's quotes adjacent: no bracket in a string
        skeleton = skeleton.translate(None, b'"')
    else:  # keep only what lies between strings
        skeleton = b"".join(skeleton.split(b'"')[::2])
    for level in range(limit + 1):
        if not skeleton:
            return level
        skeleton = skeleton.replace(b"{}", b"")
    return limit + 1


def _check(raw: bytes, value: Any, field: str) -> None:
    escaped = b"\\" in raw  # one memchr; most bodies have no escape at all
    if escaped and b"\\u0000" in raw and any(len(m.group(1)) % 2 for m in _NUL_ESCAPE.finditer(raw)):
        raise _first(value, field, lambda s: "\x00" in s) or BadInput(field, "contains a NUL character")
    if nesting(raw) > MAX_DEPTH:
        raise BadInput(_deepest(value, field), f"nests deeper than {MAX_DEPTH} levels; flatten it")


def _refusal(raw: bytes, exc: orjson.JSONDecodeError, field: str) -> BadInput | None:
    """What orjson refused that a lenient parser (the standard library's) would have let through, or None."""
    if str(exc).startswith("depth limit exceeded"):
        return BadInput(field, f"nests deeper than {MAX_DEPTH} levels; flatten it")
    try:
        value = json.loads(raw)
    except Exception:  # noqa: BLE001 - not JSON for either parser: a plain syntax error
        return None
    return _first(value, field, lambda s: text_problem(s) is not None, numbers=True)


def _first(value: Any, field: str, bad: Callable[[str], bool], numbers: bool = False) -> BadInput | None:
    """The first string (key or value) `bad` picks, or NaN/infinity if `numbers`, as a BadInput naming its path."""
    for path, item, is_key in _walk(value, field):
        if isinstance(item, str) and bad(item):
            problem = text_problem(item) or "contains a NUL character, which cannot be stored; remove it"
            return BadInput(path, f"has a key that {problem}" if is_key else problem)
        if numbers and isinstance(item, float) and not math.isfinite(item):
            return BadInput(path, "is NaN or infinite, which JSON does not allow; send a finite number or null")
    return None


def _deepest(value: Any, field: str) -> str:
    """Where a value first nests deeper than MAX_DEPTH (the path shortened past a few levels)."""
    stack: list[tuple[Any, list[str], int]] = [(value, [], 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            shown = path[:4] + ["…"] if len(path) > 4 else path
            return _join(field, shown)
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        stack.extend((child, [*path, str(key)], depth + 1) for key, child in children
                     if isinstance(child, dict | list))
    return field


def _walk(value: Any, field: str) -> Iterator[tuple[str, Any, bool]]:
    """Every key and value under `value` with its dotted path, depth first, iteratively."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        yield _join(field, path), item, False
        if isinstance(item, dict):
            for key in item:
                yield _join(field, path), key, True
            stack.extend((child, [*path, str(key)]) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, [*path, str(i)]) for i, child in reversed(list(enumerate(item))))


def _join(field: str, path: list[str]) -> str:
    if not path:
        return field
    return ".".join(path) if field == "body" else ".".join([field, *path])

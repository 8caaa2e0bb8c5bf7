"""CEL rules: compile once, cache the program, evaluate against plain values.

Per-event conditions may be written in CEL (`event.properties.amount > 100 && event.properties.sku in
["a", "b"]`). Every expression is compiled by the real CEL implementation (syntax errors come from
there); segment rules additionally translate the comparison subset of CEL into the JSON `where` tree,
so the same condition runs as SQL in Postgres and as query DSL in Elasticsearch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

from domain.errors import DomainError

MAX_LENGTH = 4000


class InvalidExpression(DomainError):
    title = "Invalid CEL expression"


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> cel.Program:
    """The compiled program for `expression`; compiled once per process, then reused."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidExpression("CEL expression is empty")
    if len(expression) > MAX_LENGTH:
        raise InvalidExpression(f"CEL expression is longer than {MAX_LENGTH} characters")
    try:
        return cel.compile(expression)
    except ValueError as exc:
        raise InvalidExpression(f"CEL syntax error: {_first_line(str(exc))}") from exc


def _first_line(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return " ".join(lines[:3]).replace("Failed to parse expression", "in").strip()


def evaluate(expression: str, variables: dict[str, Any]) -> bool:
    """True only if the expression evaluates to true; a missing field or type mismatch is false."""
    program = compile_expression(expression)
    try:
        return program.execute(variables) is True
    except (KeyError, TypeError, ValueError, RuntimeError):
        return False


@dataclass(frozen=True)
class Needs:
    """What of its variables an expression reads: the top-level names, and for a mapping variable read only as
    `name.field.KEY` (`contact.traits.tier`), just those keys of that field."""

    names: frozenset[str]
    keys: tuple[tuple[str, str, frozenset[str]], ...]  # (name, field, the keys read) for each prunable field


PATH = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)")


def references(expression: str) -> dict[str, frozenset[tuple[str, ...]] | None]:
    """Per name that starts a path in `expression`, the paths read below it (`contact.traits.tier`: `("traits",
    "tier")`), or None when the name is used whole: alone, indexed (`contact["id"]`) or with a method called on it
    (`cart.size()`); a method called further down ends the path before it. Names inside string literals count
    too: a mention only ever widens what a caller keeps."""
    found: dict[str, set[tuple[str, ...]] | None] = {}
    for match in PATH.finditer(expression):
        path = tuple(p.strip() for p in match[2].split(".")[1:])
        if path and expression[match.end():].lstrip()[:1] == "(":
            path = path[:-1]  # the last name is a method called on what comes before it
        if not path:
            found[match[1]] = None
        elif (known := found.setdefault(match[1], set())) is not None:
            known.add(path)
    return {k: None if v is None else frozenset(v) for k, v in found.items()}


@lru_cache(maxsize=4096)
def needs(expression: str, name: str, field: str) -> Needs:
    """The variables `expression` reads, with `name.field` pruned to the keys it names when every mention of `name`
    is a `name.field.KEY` path (`references`). Evaluating on the pruned variables gives the same result: a key it
    does not name is never read. Converting variables to CEL values costs more than evaluating most rules, and
    traits can be many."""
    names = frozenset(compile_expression(expression).variables())
    paths = references(expression).get(name, frozenset())
    if paths is None or any(len(p) < 2 or p[0] != field for p in paths):
        return Needs(names, ())  # the whole mapping, a field of it used as a whole, or indexed: keep everything
    return Needs(names, ((name, field, frozenset(p[1] for p in paths)),) if name in names else ())


def pruned(expression: str, variables: dict[str, Any], name: str, field: str) -> dict[str, Any]:
    """`variables` with what `expression` does not read (see `needs`) left out."""
    need = needs(expression, name, field)
    kept = {k: v for k, v in variables.items() if k in need.names}
    for var, sub, wanted in need.keys:
        value = kept.get(var)
        if isinstance(value, dict) and isinstance(value.get(sub), dict):
            inner = value[sub]
            kept[var] = {**value, sub: {k: inner[k] for k in wanted if k in inner}}
    return kept


def value_of(program: cel.Program, variables: dict[str, Any]) -> Any:
    """What a compiled program computes for `variables`; None when a field is missing or the types do not fit."""
    try:
        return program.execute(variables)
    except (KeyError, TypeError, ValueError, RuntimeError):
        return None


def evaluate_many(expression: str, batch: list[dict[str, Any]]) -> list[bool]:
    program = compile_expression(expression)
    out = []
    for variables in batch:
        try:
            out.append(program.execute(variables) is True)
        except (KeyError, TypeError, ValueError, RuntimeError):
            out.append(False)
    return out


# ---- CEL subset → segment `where` tree ----------------------------------------------------------

TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>-?\d+\.\d*(?:[eE][+-]?\d+)?|-?\d+(?:[eE][+-]?\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|\(|\)|\[|\]|,|\.)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
CMP = {"==": "eq", "!=": "neq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
METHODS = {"contains": "contains", "startsWith": "starts_with"}
SUPPORTED = ("==, !=, <, <=, >, >=, in [..], &&, ||, !, has(event.properties.x), "
             ".contains(\"..\"), .startsWith(\"..\") over event.properties.* and event.context.*")


@dataclass(frozen=True)
class _Path:
    parts: tuple[str, ...]


class _Parser:
    def __init__(self, expression: str, where: str) -> None:
        self.where = where
        self.tokens: list[tuple[str, Any]] = []
        pos = 0
        text = expression.rstrip()
        while pos < len(text):
            match = TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise self.error(f"cannot read {text[pos:pos + 10]!r}")
            pos = match.end()
            kind = match.lastgroup or ""
            raw = match[kind]
            if kind == "num":
                self.tokens.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw)))
            elif kind == "str":
                self.tokens.append(("lit", _unquote(raw)))
            elif kind == "name" and raw in ("true", "false", "null"):
                self.tokens.append(("lit", {"true": True, "false": False, "null": None}[raw]))
            else:
                self.tokens.append((kind, raw))
        self.i = 0

    def error(self, message: str) -> InvalidExpression:
        return InvalidExpression(f"{self.where}: {message}; segment CEL supports {SUPPORTED}")

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise self.error(f"expected {value or 'more input'}")
        self.i += 1
        return token

    def parse(self) -> dict[str, Any]:
        tree = self.disjunction()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return _as_condition(tree, self)

    def disjunction(self) -> Any:
        items = [self.conjunction()]
        while self.peek() == ("op", "||"):
            self.take()
            items.append(self.conjunction())
        return {"or": [_as_condition(x, self) for x in items]} if len(items) > 1 else items[0]

    def conjunction(self) -> Any:
        items = [self.unary()]
        while self.peek() == ("op", "&&"):
            self.take()
            items.append(self.unary())
        return {"and": [_as_condition(x, self) for x in items]} if len(items) > 1 else items[0]

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return {"not": _as_condition(self.unary(), self)}
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        token = self.peek()
        if token and token[0] == "op" and token[1] in CMP:
            op = self.take()[1]
            right = self.primary()
            if isinstance(left, _Path) and not isinstance(right, _Path | dict):
                return {"field": _field(left, self), "op": CMP[op], "value": _scalar(right, self)}
            if isinstance(right, _Path) and not isinstance(left, _Path | dict):
                return {"field": _field(right, self), "op": CMP[FLIP[op]], "value": _scalar(left, self)}
            raise self.error("a comparison needs an event field on one side and a literal on the other")
        if token == ("name", "in"):
            self.take()
            right = self.primary()
            if not isinstance(left, _Path) or not isinstance(right, list):
                raise self.error("`in` needs an event field on the left and a list literal on the right")
            return {"field": _field(left, self), "op": "in", "value": [_scalar(v, self) for v in right]}
        return left

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "lit":
            return value
        if (kind, value) == ("op", "("):
            inner = self.disjunction()
            self.take(")")
            return inner
        if (kind, value) == ("op", "["):
            items = []
            while self.peek() != ("op", "]"):
                items.append(self.take()[1] if self.peek() and self.peek()[0] == "lit" else self._bad_list())  # type: ignore[index]
                if self.peek() == ("op", ","):
                    self.take()
            self.take("]")
            return items
        if (kind, value) == ("name", "has"):
            self.take("(")
            path = self.path(self.take()[1])
            self.take(")")
            return {"field": _field(path, self), "op": "exists"}
        if kind == "name":
            return self.path(value)
        raise self.error(f"unexpected {value!r}")

    def _bad_list(self) -> Any:
        raise self.error("list items must be literals")

    def path(self, root: str) -> Any:
        parts = [root]
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                name = self.take()[1]
                if self.peek() == ("op", "(") and name in METHODS:
                    self.take("(")
                    arg = self.take()
                    self.take(")")
                    if arg[0] != "lit" or not isinstance(arg[1], str):
                        raise self.error(f".{name}() needs a string literal")
                    return {"field": _field(_Path(tuple(parts)), self), "op": METHODS[name], "value": arg[1]}
                if self.peek() == ("op", "("):
                    raise self.error(f"function .{name}() is not supported in segment rules")
                parts.append(name)
            else:
                key = self.take()
                if key[0] != "lit" or not isinstance(key[1], str):
                    raise self.error("index with a string, e.g. event.properties[\"order-id\"]")
                self.take("]")
                parts.append(key[1])
        return _Path(tuple(parts))


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)


def _field(path: _Path, parser: _Parser) -> str:
    parts = path.parts
    if len(parts) < 3 or parts[0] != "event" or parts[1] not in ("properties", "context"):
        raise parser.error(f"unknown field {'.'.join(parts)!r}; use event.properties.<name> or event.context.<name>")
    return ".".join(parts[1:])


def _scalar(value: Any, parser: _Parser) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    raise parser.error(f"compare with a string, number or boolean, not {value!r}")


def _as_condition(tree: Any, parser: _Parser) -> dict[str, Any]:
    if isinstance(tree, _Path):  # a bare boolean field
        return {"field": _field(tree, parser), "op": "eq", "value": True}
    if isinstance(tree, dict):
        return tree
    raise parser.error(f"{tree!r} is not a condition")


def cel_to_tree(expression: Any, where: str = "where_cel") -> dict[str, Any]:
    """Translate a per-event CEL expression into the segment `where` tree; InvalidExpression if not possible."""
    if not isinstance(expression, str):
        raise InvalidExpression(f"{where}: expected a CEL expression string")
    try:
        compile_expression(expression)
    except InvalidExpression as exc:
        raise InvalidExpression(f"{where}: {exc}") from exc
    return _Parser(expression, where).parse()

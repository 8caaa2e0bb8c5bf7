"""Marketer templates: Jinja2 in a bounded sandbox, checked before they are saved and rendered at send.

The sandbox blocks attribute access to Python internals (`__class__`, `__mro__`, ...), so a template can read
the contact and the campaign but never the server. It also refuses, before computing them, the values that turn
a template into a bomb; the callers run each render in a worker process that adds the CPU, memory and
wall-clock bounds (core/confinement.py), so nothing here needs to be interruptible.

Bounds, and why:
- output: 262,144 characters (256 K) per part. Gmail clips an email above 102 KB, so a legitimate part stays far
  below; rendering stops as soon as the running total passes the bound.
- strings: 1,000,000 characters for any value built by `*`, `+`, `~`, `%` or a method call (4x the output bound,
  room to build and then truncate, and small enough that a few of them stay far inside the memory bound).
- lists built by `*` or `+`, and `range()`: 10,000 items (the longest list an email plausibly shows; Jinja's
  own default is 100,000).
- loop iterations: 100,000 per render over all loops together (10 x the range bound, ~0.1 s of work), so nested
  loops that each stay under the range bound cannot multiply into millions.
- integers: 4,300 digits, CPython's own int-to-str guard (such an integer could not be printed anyway); a power
  or product is refused from the operands' sizes before it is computed, so `10**(10**10)` costs nothing.
- CPU: 1 s per part (a typical render takes well under a millisecond); memory: 256 MB above the worker
  process's baseline; wall clock: 5 s, after which the worker is killed (a single long C call ignores the CPU
  timer until it returns). These three are enforced by the worker process; they are stated here, in RENDER_*.
At save a template is also checked statically, so a bomb behind a branch the sample contact does not take is
refused too: constant expressions are folded under the same bounds, `range()` of constants and nested loops of
known length are sized.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from domain.errors import TemplateProblem

MAX_TEMPLATE_CHARS = 100_000
MAX_OUTPUT_CHARS = 256 * 1024
MAX_STRING_CHARS = 1_000_000
MAX_ITEMS = 10_000
MAX_LOOP_ITERATIONS = 100_000
MAX_INT_DIGITS = 4_300
RENDER_CPU_SECONDS = 1.0
RENDER_MEMORY_BYTES = 256 * 1024 * 1024
RENDER_WALL_SECONDS = 5.0

_LOG10_2 = math.log10(2)


class BoundExceeded(TemplateProblem):
    """A render would pass one of the bounds; the message names which ("renders more than ...")."""


def _over_int_digits(digits: float) -> BoundExceeded:
    return BoundExceeded(f"makes an integer of more than {MAX_INT_DIGITS:,} digits ({digits:,.0f})")


def _digits(n: int) -> float:
    return n.bit_length() * _LOG10_2


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_INT_DIGITS:
            raise BoundExceeded(f"uses an integer power too large: more than {MAX_INT_DIGITS:,} digits "
                                f"(about {digits:,.0f})")
    return base**exponent


def _sized(value: Any) -> Any:
    """Refuse a string or integer already built past its bound (for results that cannot be sized beforehand).
    Lists are left alone here: a call or `~` cannot amplify one, only `*` and `+` can, and those are sized first."""
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise BoundExceeded(f"builds a string longer than {MAX_STRING_CHARS:,} characters")
    if isinstance(value, int) and not isinstance(value, bool) and _digits(value) > MAX_INT_DIGITS + 1:
        raise _over_int_digits(_digits(value))
    return value


def _check_length(sequence: Any, length: int) -> None:
    if isinstance(sequence, str) and length > MAX_STRING_CHARS:
        raise BoundExceeded(f"builds a string longer than {MAX_STRING_CHARS:,} characters ({length:,})")
    if isinstance(sequence, list | tuple) and length > MAX_ITEMS:
        raise BoundExceeded(f"builds a list longer than {MAX_ITEMS:,} items ({length:,})")


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        digits = _digits(left) + _digits(right)
        if digits > MAX_INT_DIGITS + 1:
            raise _over_int_digits(digits)
    elif isinstance(right, int) and isinstance(left, str | list | tuple):
        _check_length(left, len(left) * max(right, 0))
    elif isinstance(left, int) and isinstance(right, str | list | tuple):
        _check_length(right, len(right) * max(left, 0))
    return left * right


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        _check_length(left, len(left) + len(right))
    return left + right


def _modulo(left: Any, right: Any) -> Any:
    # `'%0999999d' % 1` cannot be sized beforehand; the memory bound covers the worst case, this the rest.
    return _sized(left % right)


_BINOPS = {"**": _power, "*": _multiply, "+": _add, "%": _modulo}


@dataclass
class _Budget:
    iterations: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _range(*args: int) -> range:
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:
        length = MAX_ITEMS + 1
    if length > MAX_ITEMS:
        raise BoundExceeded(f"uses a range longer than {MAX_ITEMS:,} items")
    return numbers


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with operators, ranges, loops, concatenation and call results bounded."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _range

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return _BINOPS[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        return _sized(super().call(__context, __obj, *args, **kwargs))

    @staticmethod
    def metered_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        """Every `{% for %}` iterates through here (see _Metered), charging the render's loop budget."""
        budget = _budget.get()
        for item in iterable:
            if budget is not None:
                budget.iterations += 1
                if budget.iterations > MAX_LOOP_ITERATIONS:
                    raise BoundExceeded(f"loops more than {MAX_LOOP_ITERATIONS:,} times")
            yield item

    @staticmethod
    def bounded_string(value: Any) -> Any:
        """Every `~` concatenation passes through here (see _Metered)."""
        return _sized(value)


class _Metered(NodeTransformer):
    """Route loops and `~` through the environment's meters: Jinja has no hook for either."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _environment_call("metered_iter", node.iter, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _environment_call("bounded_string", node, node.lineno)


def _environment_call(name: str, argument: nodes.Node, lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), [argument], [], None, None, lineno=lineno)


_env = BoundedEnvironment(autoescape=False, undefined=Undefined, keep_trailing_newline=True)
_html_env = BoundedEnvironment(autoescape=True, undefined=Undefined, keep_trailing_newline=True)


def _environment(html: bool) -> BoundedEnvironment:
    return _html_env if html else _env


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool) -> Any:
    env = _environment(html)
    tree = _Metered().visit(env.parse(source))
    tree.set_environment(env)
    return env.from_string(tree)


def check(source: str, field: str, html: bool = False) -> None:
    """Raise TemplateProblem, naming the field and the rule, unless the template compiles, reaches for nothing it
    must not, has no constant beyond a bound and renders a sample contact within the bounds. Run it where the
    CPU, memory and wall-clock bounds hold too (store/campaigns/definitions.py:check_templates)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(f"{field} is longer than {MAX_TEMPLATE_CHARS} characters.")
    try:
        tree = _environment(html).parse(source)
        _compile(source, html)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{field} has a syntax error on line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:
        raise TemplateProblem(f"{field}: the template is nested too deeply to compile.") from exc
    _refuse_private_attributes(tree, field)
    try:
        _static_value(tree, 1)
    except BoundExceeded as exc:
        raise BoundExceeded(f"{field}: the template {exc}.") from exc
    except RecursionError as exc:
        raise TemplateProblem(f"{field}: the template is nested too deeply to check.") from exc
    try:
        render(source, SAMPLE_CONTEXT, html)
    except BoundExceeded as exc:
        raise BoundExceeded(f"{field}: the template {exc} for a sample contact.") from exc
    except TemplateProblem as exc:
        raise TemplateProblem(f"{field}: rendered for a sample contact, the template {exc}.") from exc


def _refuse_private_attributes(tree: nodes.Template, field: str) -> None:
    """Reject `x.__class__`-style access up front: the sandbox would only render it as empty."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateProblem(f"{field} tries to access something templates may not use: {name!r}")


class _Unknown:
    """The static value of an expression that depends on the contact."""


UNKNOWN = _Unknown()
_FOLDED: dict[type[nodes.BinExpr], Any] = {
    nodes.Pow: _power, nodes.Mul: _multiply, nodes.Add: _add, nodes.Mod: _modulo,
    nodes.Sub: lambda a, b: a - b, nodes.FloorDiv: lambda a, b: a // b, nodes.Div: lambda a, b: a / b,
}


def _static_value(node: nodes.Node, loops: int) -> Any:
    """Visit every node once: fold constant expressions under the bounds, size `range()` of constants and
    multiply the lengths of nested loops whose iterable is known. `loops` is how many times the enclosing loops
    run this node. Returns the node's constant value, or UNKNOWN."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.For):
        _static_value(node.iter, loops)
        inner = loops * _static_length(node.iter)
        if inner > MAX_LOOP_ITERATIONS:
            raise BoundExceeded(f"loops more than {MAX_LOOP_ITERATIONS:,} times ({inner:,} in nested loops)")
        for child in node.body:
            _static_value(child, inner)
        for child in [*node.else_, *([node.test] if node.test else [])]:
            _static_value(child, loops)
        return UNKNOWN
    if isinstance(node, nodes.BinExpr) and type(node) in _FOLDED:
        left, right = _static_value(node.left, loops), _static_value(node.right, loops)
        return _fold(_FOLDED[type(node)], left, right)
    if isinstance(node, nodes.Neg):
        return _fold(lambda a, _: -a, _static_value(node.node, loops), 0)
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_static_value(item, loops) for item in node.items]
        if any(item is UNKNOWN for item in items):
            return UNKNOWN
        return items if isinstance(node, nodes.List) else tuple(items)
    if isinstance(node, nodes.Concat):
        parts = [_static_value(part, loops) for part in node.nodes]
        if any(part is UNKNOWN for part in parts):
            return UNKNOWN
        return _sized("".join(map(str, parts)))
    values = [_static_value(child, loops) for child in node.iter_child_nodes()]
    if _is_range_call(node):
        assert isinstance(node, nodes.Call)
        args = values[1:]
        if all(isinstance(a, int) for a in args) and len(args) == len(node.args):
            _fold(lambda a, _: _range(*a), args, 0)
    return UNKNOWN


def _fold(operation: Any, left: Any, right: Any) -> Any:
    if left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    try:
        return operation(left, right)
    except BoundExceeded:
        raise
    except Exception:  # noqa: BLE001 - a division by zero and the like are the render's business
        return UNKNOWN


def _is_range_call(node: nodes.Node) -> bool:
    return (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range"
            and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None)


def _static_length(iterable: nodes.Node) -> int:
    """How many times a loop over this runs, when the template alone says so; 1 when the contact decides."""
    if _is_range_call(iterable):
        assert isinstance(iterable, nodes.Call)
        args = [_static_value(a, 1) for a in iterable.args]
        if args and all(isinstance(a, int) for a in args):
            try:
                return len(range(*args))
            except (OverflowError, ValueError, TypeError):
                return 1
    value = _static_value(iterable, 1)
    if isinstance(value, str | list | tuple):
        return max(len(value), 1)
    return 1


def render(source: str, context: dict[str, Any], html: bool = False) -> str:
    """The rendered text, or TemplateProblem (BoundExceeded when a bound stopped it). Like `check`, meant to run in
    a confined worker (activities/campaigns.py renders a batch there)."""
    token = _budget.set(_Budget())
    try:
        chunks: list[str] = []
        size = 0
        for chunk in _compile(source, html).generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise BoundExceeded(f"renders more than {MAX_OUTPUT_CHARS:,} characters")
            chunks.append(chunk)
        return "".join(chunks)
    except TemplateProblem:
        raise
    except SecurityError as exc:
        raise TemplateProblem(f"tries to access something templates may not use: {exc}") from exc
    except MemoryError as exc:
        raise BoundExceeded(f"needs more than {RENDER_MEMORY_BYTES // 2**20} MB of memory") from exc
    except RecursionError as exc:
        raise TemplateProblem("recurses too deeply") from exc
    except Exception as exc:  # noqa: BLE001 - a marketer's template must never crash the server
        raise TemplateProblem(f"raised an error: {exc}") from exc
    finally:
        _budget.reset(token)


SAMPLE_CONTEXT: dict[str, Any] = {
    "contact": {"id": 1, "user_id": "u-1", "email": "ada@example.com", "phone": "+15550100",
                "timezone": "Europe/London", "traits": {"first_name": "Ada", "plan": "pro"}},
    "campaign": {"id": 1, "name": "Sample"},
}


def contact_context(contact: dict[str, Any], campaign: dict[str, Any]) -> dict[str, Any]:
    traits = contact.get("traits") or {}
    return {"contact": {**contact, **{k: v for k, v in traits.items() if k not in contact}}, "campaign": campaign}


# Missing variables: which of the values a template reads are undefined for a given contact. The probe renders with
# an Undefined that records its name when the template *uses* it (prints, concatenates or loops over it, or reaches
# through it); `| default(...)`, `is defined` and `{% if %}` only test it, so they record nothing and a template
# that guards its variables passes. The recorded names are mapped back to the dotted paths the template reads
# (`contact.first_name`) from its syntax tree (meta.find_undeclared_variables for the roots).

_misses: ContextVar[list[str] | None] = ContextVar("template_misses", default=None)


class _Recording(Undefined):
    __slots__ = ()

    def _record(self) -> None:
        misses = _misses.get()
        if misses is not None:
            misses.append(str(self._undefined_name or "?"))

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        self._record()
        return super()._fail_with_undefined_error(*args, **kwargs)

    def __str__(self) -> str:
        self._record()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._record()
        return iter(())


_probe_env = BoundedEnvironment(autoescape=False, undefined=_Recording, keep_trailing_newline=True)
_probe_html_env = BoundedEnvironment(autoescape=True, undefined=_Recording, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def _probe(source: str, html: bool) -> tuple[Any, tuple[str, ...]]:
    """The template compiled for probing, and the dotted paths it reads (`contact.first_name`, `campaign`)."""
    env = _probe_html_env if html else _probe_env
    parsed = env.parse(source)
    paths = [f"{node.node.name}.{node.attr}" for node in parsed.find_all(nodes.Getattr)
             if isinstance(node.node, nodes.Name)]
    paths += [f"{node.node.name}.{node.arg.value}" for node in parsed.find_all(nodes.Getitem)
              if isinstance(node.node, nodes.Name) and isinstance(node.arg, nodes.Const)]
    paths += sorted(meta.find_undeclared_variables(parsed))
    tree = _Metered().visit(parsed)
    tree.set_environment(env)
    return env.from_string(tree), tuple(paths)


def missing_variables(source: str, context: dict[str, Any], html: bool = False) -> list[str]:
    """The dotted paths this template uses without a default that are undefined in `context`, sorted; empty when
    it reads nothing missing. A render that fails for another reason reports what it found before failing (the
    send refuses that message on its own). Meant to run in the confined workers, like `render`."""
    compiled, paths = _probe(source, html)
    misses: list[str] = []
    token, budget = _misses.set(misses), _budget.set(_Budget())
    try:
        size = 0
        for chunk in compiled.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                break
    except Exception:  # noqa: BLE001, S110 - other problems are the render's business, reported at send
        pass
    finally:
        _misses.reset(token)
        _budget.reset(budget)
    found = set()
    for name in misses:
        found.add(next((p for p in paths if p == name or p.endswith("." + name)), name))
    return sorted(found)

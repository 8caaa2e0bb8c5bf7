"""Which contact values a campaign's templates need: the paths a template uses without a default or a guard, read
from its syntax tree, and where each lives (a trait, a column, nowhere), so the store can count in SQL, over a whole
audience, the recipients who lack one.

A path is *used* where a render would print, loop over, compute with or reach through it; it is *guarded* where a
missing value cannot reach the output: under `| default(...)`, in an `is defined` (or any) test, as the truth value
of an `{% if %}`, `x if c else y`, `not`, the left of `or`, or an `==`/`!=`, and inside an `{% if %}` (or the
`x` of `x if c else y`, the right of `and`) whose condition mentions it. Branches are not evaluated: a path used in
any branch not guarded for it counts, for every recipient (stricter than a render, never laxer, except through an
alias: `{% set n = contact.first_name %}{{ n }}` counts at the `set`, a `{% for %}` variable is the loop's own).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

# The context a send renders (domain/templates.py:contact_context): the contact's columns, then its traits under
# their own names unless a column has it; the campaign's id, name and variant. Globals of the environment.
CONTACT_COLUMNS = frozenset({"id", "user_id", "email", "phone", "timezone", "traits"})
CAMPAIGN_FIELDS = frozenset({"id", "name", "variant"})
GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"})
DEFAULT_FILTERS = frozenset({"default", "d"})

Path = tuple[str, ...]
_parser = SandboxedEnvironment()


def needed(source: str, html: bool = False) -> list[Path]:
    """The paths (`("contact", "first_name")`) the template uses unguarded, sorted. Meant for the confined workers,
    like domain/templates.py's renders (`html` only keeps their signature)."""
    tree = _parser.parse(source)
    walk = _Walk(frozenset(meta.find_undeclared_variables(tree)) | {"contact", "campaign"})
    for node in tree.body:
        walk.visit(node, used=True, guarded=frozenset())
    return sorted(walk.uses)


class Place(Enum):
    TRAIT = "trait"  # present for a recipient whose traits hold the key path
    ALWAYS = "always"  # defined for every recipient (a column, the campaign's id/name/variant, a global)
    NEVER = "never"  # defined for nobody (an unknown variable or campaign field)


@dataclass(frozen=True)
class Lookup:
    place: Place
    keys: Path = ()  # the traits' key path (Place.TRAIT)


def lookup(path: Path) -> Lookup:
    """Where a used path is found in a recipient's context."""
    root, rest = path[0], path[1:]
    if root == "contact":
        if not rest:
            return Lookup(Place.ALWAYS)
        if rest[0] == "traits" and len(rest) > 1:
            return Lookup(Place.TRAIT, rest[1:])
        if rest[0] in CONTACT_COLUMNS:
            return Lookup(Place.ALWAYS)
        return Lookup(Place.TRAIT, rest)
    if root == "campaign":
        return Lookup(Place.ALWAYS if not rest or rest[0] in CAMPAIGN_FIELDS else Place.NEVER)
    return Lookup(Place.ALWAYS if root in GLOBALS else Place.NEVER)


def dotted(path: Path) -> str:
    return ".".join(path)


def _path(node: nodes.Node) -> Path | None:
    """The constant path of `a.b['c'].d` from a name, or None (a computed key, a call on the way)."""
    keys: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
            keys.append(str(node.arg.value))
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return (node.name, *reversed(keys))


def _mentioned(node: nodes.Node) -> frozenset[Path]:
    """Every path a condition reads (each prefix too: `contact.a.b` being truthy means `contact.a` exists)."""
    found: set[Path] = set()
    for candidate in [node, *node.find_all((nodes.Getattr, nodes.Getitem, nodes.Name))]:
        path = _path(candidate)
        if path is not None:
            found.update(path[:i] for i in range(1, len(path) + 1))
    return frozenset(found)


class _Walk:
    def __init__(self, roots: frozenset[str]) -> None:
        self.roots = roots  # names the context provides (not set or looped over in the template)
        self.uses: set[Path] = set()

    def _use(self, path: Path, used: bool, guarded: frozenset[Path]) -> None:
        if used and path[0] in self.roots and path not in guarded:
            self.uses.add(path)

    def visit_all(self, children: Iterable[nodes.Node], used: bool, guarded: frozenset[Path]) -> None:
        for child in children:
            self.visit(child, used, guarded)

    def visit(self, node: nodes.Node, used: bool, guarded: frozenset[Path]) -> None:  # noqa: C901, PLR0911, PLR0912
        path = _path(node) if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name) else None
        if path is not None:
            self._use(path, used, guarded)
            return
        if isinstance(node, nodes.Filter) and node.name in DEFAULT_FILTERS:
            if node.node is not None:
                self.visit(node.node, False, guarded)
            self.visit_all([*node.args, *(k.value for k in node.kwargs)], True, guarded)
            return
        if isinstance(node, nodes.Test):
            self.visit(node.node, False, guarded)
            self.visit_all([*node.args, *(k.value for k in node.kwargs)], True, guarded)
            return
        if isinstance(node, nodes.If):
            self.visit(node.test, False, guarded)
            self.visit_all(node.body, True, guarded | _mentioned(node.test))
            self.visit_all(node.elif_, True, guarded)  # each elif is an If guarding its own body
            self.visit_all(node.else_, True, guarded)
            return
        if isinstance(node, nodes.CondExpr):
            self.visit(node.test, False, guarded)
            self.visit(node.expr1, used, guarded | _mentioned(node.test))
            if node.expr2 is not None:
                self.visit(node.expr2, used, guarded)
            return
        if isinstance(node, nodes.Not):
            self.visit(node.node, False, guarded)
            return
        if isinstance(node, nodes.Or):
            self.visit(node.left, False, guarded)  # an undefined left is falsy: the right is the value
            self.visit(node.right, used, guarded)
            return
        if isinstance(node, nodes.And):
            self.visit(node.left, used, guarded)  # an undefined left is the value (printed if used)
            self.visit(node.right, used, guarded | _mentioned(node.left))
            return
        if isinstance(node, nodes.Compare):
            equality = all(op.op in ("eq", "ne") for op in node.ops)
            self.visit(node.expr, not equality, guarded)
            self.visit_all([op.expr for op in node.ops], not equality, guarded)
            return
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            self.visit(node.node.node, True, guarded)  # `contact.first_name.upper()`: the object is used
            self.visit_all([*node.args, *(k.value for k in node.kwargs),
                            *(n for n in (node.dyn_args, node.dyn_kwargs) if n is not None)], True, guarded)
            return
        if isinstance(node, nodes.For):
            self.visit(node.iter, True, guarded)
            self.visit_all([*node.body, *node.else_, *([node.test] if node.test else [])], True, guarded)
            return
        self.visit_all(node.iter_child_nodes(), True, guarded)

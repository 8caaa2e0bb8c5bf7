"""The active rule set prepared once per version, not once per quote (seed 002: cache what does not change): the
promotions in id order, indexed by the SKUs and categories their scopes name, their CEL conditions compiled, and
what every quote would otherwise work out again per promotion (its place in the order of application, whether it
has checks beyond its scope, the explanation when no cart line is in its scope). A quote then only works out the
scope of the promotions that can reach one of its lines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from domain.promotions.model import STAGE_ORDER, Line, Promotion
from domain.promotions.quotes import NotApplied, Reason
from domain.rules import compile_expression

NOT_IN_SCOPE = "no cart line is in its scope"


class RuleIndex:
    __slots__ = ("application", "by_category", "by_sku", "everywhere", "excluding", "gated", "kinds",
                 "not_in_scope", "promotions", "stages")

    def __init__(self, promotions: Iterable[Promotion]) -> None:
        self.promotions = tuple(sorted(promotions, key=lambda p: p.id))
        by_category: dict[str, list[int]] = {}
        by_sku: dict[str, list[int]] = {}
        excluding: dict[str, set[int]] = {}
        everywhere = []
        for position, p in enumerate(self.promotions):
            if p.condition:
                compile_expression(p.condition)
            if not p.scope.categories and not p.scope.skus:
                everywhere.append(position)
            for category in p.scope.categories:
                by_category.setdefault(category, []).append(position)
            for sku in p.scope.skus:
                by_sku.setdefault(sku, []).append(position)
            for sku in p.scope.excluded_skus:
                excluding.setdefault(sku, set()).add(position)
        self.by_category = {k: tuple(v) for k, v in by_category.items()}
        self.by_sku = {k: tuple(v) for k, v in by_sku.items()}
        self.excluding = {k: frozenset(v) for k, v in excluding.items()}
        self.everywhere = tuple(everywhere)
        # Per position: the kind's and the stage's names, and the place in the order of application (stage, then
        # priority, then id) among all the promotions — among a quote's candidates the same order holds.
        self.kinds = tuple(p.kind.value for p in self.promotions)
        self.stages = tuple(p.stage.value for p in self.promotions)
        ordered = sorted(range(len(self.promotions)),
                         key=lambda k: (STAGE_ORDER[self.promotions[k].stage], self.promotions[k].rank()))
        application = [0] * len(ordered)
        for place, position in enumerate(ordered):
            application[position] = place
        self.application = tuple(application)
        # Whether a promotion has a check that comes before its scope's (pricing.py: _gate); without one, a
        # promotion no line reaches is not in scope whatever the cart, and says so with the same value every time.
        self.gated = tuple(bool(p.channels or p.starts_at or p.ends_at or p.per_user_limit is not None
                                or p.budget is not None) for p in self.promotions)
        self.not_in_scope = tuple(NotApplied(p.id, Reason.NOT_IN_SCOPE, NOT_IN_SCOPE) for p in self.promotions)

    def __len__(self) -> int:
        return len(self.promotions)

    def scoped(self, lines: Sequence[Line]) -> dict[int, list[int]]:
        """Per position of a promotion whose scope covers one of `lines`, the indexes of the lines it covers, in
        order (a promotion on categories the cart does not hold costs nothing)."""
        found: dict[int, list[int]] = {}
        everywhere, by_sku, by_category, excluding = self.everywhere, self.by_sku, self.by_category, self.excluding
        for i, line in enumerate(lines):
            excluded = excluding.get(line.sku)
            for positions in (everywhere, by_sku.get(line.sku, ()), by_category.get(line.category, ())):
                for position in positions:
                    if excluded is not None and position in excluded:
                        continue
                    covered = found.get(position)
                    if covered is None:
                        found[position] = [i]
                    elif covered[-1] != i:  # a scope naming both the line's SKU and its category
                        covered.append(i)
        return found

"""The active rule set prepared once per version, not once per quote (seed 002: cache what does not change): the
promotions in id order, indexed by the SKUs and categories their scopes name, their CEL conditions compiled. A
quote then only works out the scope of the promotions that can reach one of its lines."""

from __future__ import annotations

from collections.abc import Iterable

from domain.promotions.model import Promotion
from domain.rules import compile_expression


class RuleIndex:
    __slots__ = ("by_category", "by_sku", "everywhere", "promotions")

    def __init__(self, promotions: Iterable[Promotion]) -> None:
        self.promotions = tuple(sorted(promotions, key=lambda p: p.id))
        self.by_category: dict[str, list[int]] = {}
        self.by_sku: dict[str, list[int]] = {}
        everywhere = []
        for position, p in enumerate(self.promotions):
            if p.condition:
                compile_expression(p.condition)
            if not p.scope.categories and not p.scope.skus:
                everywhere.append(position)
            for category in p.scope.categories:
                self.by_category.setdefault(category, []).append(position)
            for sku in p.scope.skus:
                self.by_sku.setdefault(sku, []).append(position)
        self.everywhere = frozenset(everywhere)

    def __len__(self) -> int:
        return len(self.promotions)

    def reaching(self, skus: Iterable[str], categories: Iterable[str]) -> set[int]:
        """The positions of the promotions whose scope can cover a line with one of these SKUs or categories."""
        out = set(self.everywhere)
        for sku in skus:
            out.update(self.by_sku.get(sku, ()))
        for category in categories:
            out.update(self.by_category.get(category, ()))
        return out

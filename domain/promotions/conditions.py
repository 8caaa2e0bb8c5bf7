"""What a promotion's CEL condition sees (`variables`), which of it a condition reads (`reads`), and each distinct
condition of a quote evaluated once (`Conditions`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from domain.promotions.model import Cart, Contact
from domain.rules import evaluate, references

FIELDS = {"cart": frozenset({"subtotal", "quantity", "skus", "categories", "shipping"}),
          "contact": frozenset({"id", "traits", "segments", "is_new", "first_order"}),
          "context": frozenset({"channel", "now", "hour"})}


@lru_cache(maxsize=4096)
def reads(expression: str) -> Mapping[str, frozenset[str] | None]:
    """Which fields of `cart`, `contact` and `context` a condition can read (the first name of each path below them,
    `references`); None for a variable it uses whole (`cart["skus"]`, `size(contact)`, a field it does not have).
    Converting every variable for CEL cost a quote more than evaluating the condition."""
    out: dict[str, frozenset[str] | None] = {}
    for name, paths in references(expression).items():
        if name in FIELDS:
            read = None if paths is None else frozenset(p[0] for p in paths)
            out[name] = read if read is not None and read <= FIELDS[name] else None
    return out


def variables(cart: Cart, contact: Contact, fields: Mapping[str, frozenset[str] | None] | None = None,
              ) -> dict[str, Any]:
    """What a promotion's CEL condition sees: `cart`, `contact` and `context` — all of them, or only the `fields`
    a condition reads (`reads`)."""
    def wanted(name: str) -> frozenset[str] | None:
        if fields is None:
            return FIELDS[name]
        if name not in fields:
            return frozenset()
        return fields[name] or FIELDS[name]

    out: dict[str, Any] = {}
    if want := wanted("cart"):
        values: dict[str, Any] = {}
        if "subtotal" in want:
            values["subtotal"] = sum(line.amount for line in cart.lines)
        if "quantity" in want:
            values["quantity"] = sum(line.quantity for line in cart.lines)
        if "skus" in want:
            values["skus"] = sorted({line.sku for line in cart.lines})
        if "categories" in want:
            values["categories"] = sorted({line.category for line in cart.lines})
        if "shipping" in want:
            values["shipping"] = cart.shipping
        out["cart"] = {k: values[k] for k in ("subtotal", "quantity", "skus", "categories", "shipping") if k in want}
    if want := wanted("contact"):
        person: dict[str, Any] = {}
        if "id" in want:
            person["id"] = contact.id or 0
        if "traits" in want:
            person["traits"] = dict(contact.traits)
        if "segments" in want:
            person["segments"] = sorted(contact.segments)
        if "is_new" in want:
            person["is_new"] = contact.is_new
        if "first_order" in want:
            person["first_order"] = contact.first_order
        out["contact"] = person
    if want := wanted("context"):
        now = cart.now
        context = {"channel": cart.channel, "now": now.isoformat() if now else "", "hour": now.hour if now else 0}
        out["context"] = {k: v for k, v in context.items() if k in want}
    return out


class Conditions:
    """Each distinct condition evaluated once per quote, over only the variables it reads."""

    __slots__ = ("cart", "contact", "held")

    def __init__(self, cart: Cart, contact: Contact) -> None:
        self.cart = cart
        self.contact = contact
        self.held: dict[str, bool] = {}

    def hold(self, expression: str) -> bool:
        found = self.held.get(expression)
        if found is None:
            found = self.held[expression] = evaluate(expression, variables(self.cart, self.contact, reads(expression)))
        return found

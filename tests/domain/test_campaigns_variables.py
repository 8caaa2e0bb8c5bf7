"""What a campaign's templates need, read from the syntax tree: used paths count, guarded ones do not; where each
lives (a trait, a column, nowhere)."""

from __future__ import annotations

import pytest

from domain.campaigns_variables import Lookup, Place, lookup, needed


@pytest.mark.parametrize(("source", "paths"), [
    ("Hi {{ contact.first_name }}", ["contact.first_name"]),
    ("Hi {{ contact.first_name | default('there') }}", []),
    ("Hi {{ contact.first_name | d('there') | upper }}", []),
    ("{% if contact.nick %}{{ contact.nick }}{% endif %}{% if contact.x is defined %}{{ contact.x }}{% endif %}", []),
    ("{% if contact.nick %}{{ contact.nick }}{% else %}{{ contact.other }}{% endif %}", ["contact.other"]),
    ("{% if contact.a %}x{% elif contact.b %}{{ contact.b }}{{ contact.a }}{% endif %}", ["contact.a"]),
    ("{{ contact['plan'] ~ '!' }} {{ coupon }}", ["contact.plan", "coupon"]),
    ("{% for o in contact.orders %}{{ o.name }}{% endfor %}", ["contact.orders"]),
    ("{{ contact.first_name or 'there' }} {{ 'x' if contact.vip else contact.plain }}", ["contact.plain"]),
    ("{{ contact.nick if contact.nick else 'you' }} {{ contact.k and contact.k.v }}",
     ["contact.k", "contact.k.v"]),
    ("{% if contact.plan == 'pro' %}{{ contact.first_name.upper() }}{% endif %}", ["contact.first_name"]),
    ("{{ contact.age > 18 }} {{ not contact.quiet }}", ["contact.age"]),
    ("{% set n = contact.z %}{{ n }} {{ range(3) | list }} {{ loop_free }}", ["contact.z", "loop_free"]),
    ("{{ contact.address.city }} {{ contact.traits.tier }}", ["contact.address.city", "contact.traits.tier"]),
])
def test_used_paths_count_and_guarded_ones_do_not(source: str, paths: list[str]) -> None:
    assert [".".join(p) for p in needed(source)] == sorted(paths)


@pytest.mark.parametrize(("path", "where"), [
    (("contact", "first_name"), Lookup(Place.TRAIT, ("first_name",))),
    (("contact", "address", "city"), Lookup(Place.TRAIT, ("address", "city"))),
    (("contact", "traits", "tier"), Lookup(Place.TRAIT, ("tier",))),
    (("contact", "email"), Lookup(Place.ALWAYS)),  # a column: defined (if empty) for everyone
    (("contact", "traits"), Lookup(Place.ALWAYS)),
    (("campaign", "name"), Lookup(Place.ALWAYS)),
    (("campaign", "budget"), Lookup(Place.NEVER)),
    (("coupon",), Lookup(Place.NEVER)),
    (("range",), Lookup(Place.ALWAYS)),
])
def test_each_path_is_looked_up_where_a_render_finds_it(path: tuple[str, ...], where: Lookup) -> None:
    assert lookup(path) == where

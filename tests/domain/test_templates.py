"""Sandboxed marketer templates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import TemplateProblem
from domain.templates import MAX_INT_DIGITS, MAX_OUTPUT_CHARS, BoundExceeded, check, contact_context, render


def test_traits_are_reachable_as_contact_fields() -> None:
    ctx = contact_context({"id": 5, "email": "a@b.c", "traits": {"first_name": "Ada", "email": "shadow"}},
                          {"id": 1, "name": "Spring"})
    assert render("{{ contact.first_name }} <{{ contact.email }}> · {{ campaign.name }}", ctx) == "Ada <a@b.c> · Spring"


def test_missing_values_render_empty_and_defaults_apply() -> None:
    assert render("Hi {{ contact.nickname }}!", {"contact": {}}) == "Hi !"
    assert render("Hi {{ contact.nickname | default('friend') }}", {"contact": {}}) == "Hi friend"


def test_html_part_is_escaped() -> None:
    out = render("<p>{{ contact.first_name }}</p>", {"contact": {"first_name": "<script>x</script>"}}, html=True)
    assert out == "<p>&lt;script&gt;x&lt;/script&gt;</p>"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}", "{{ ''.__class__.__mro__ }}", "{{ contact.__class__.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}", "{{ ().__class__.__bases__[0].__subclasses__() }}",
])
def test_python_internals_are_out_of_reach(source: str) -> None:
    with pytest.raises(TemplateProblem, match="may not use"):
        check(source, "body")


def test_oversized_templates_are_refused() -> None:
    with pytest.raises(TemplateProblem, match="longer than"):
        check("x" * 100_001, "body")


@given(st.text(alphabet=st.characters(blacklist_characters="{}%#\r"), max_size=200))
def test_plain_text_renders_to_itself(text: str) -> None:
    # (Jinja normalises line endings to \n, so \r is left out.)
    check(text, "body")
    assert render(text, {}) == text


# Bounds (the issue's template bombs, and what a contact's data can do to an innocent template).

BOMBS = {
    "{{ 3**(3**15) }}": "integer power too large",
    "{% for i in range(4500) %}{% for j in range(4500) %}{{ i }}{% endfor %}{% endfor %}": "loops more than 100,000",
    "{{ 'x'*300000000 }}": "string longer than 1,000,000",
    "{{ 10**(10**10) }}": "integer power too large",
}


@pytest.mark.parametrize(("source", "bound"), BOMBS.items())
def test_the_issues_bombs_are_refused_naming_the_bound(source: str, bound: str) -> None:
    with pytest.raises(BoundExceeded, match=bound) as refused:
        check(source, "body")
    assert str(refused.value).startswith("body: the template ")


@pytest.mark.parametrize("source", [
    "{% if contact.plan == 'enterprise' %}{{ 10**(10**10) }}{% endif %}",
    "{% if false %}{% for a in range(400) %}{% for b in range(400) %}.{% endfor %}{% endfor %}{% endif %}",
    "{% if false %}{{ range(10**6) | list }}{% endif %}",
    "{% if false %}{{ [0] * 20000 }}{% endif %}",
    "{% macro never() %}{{ 'ab' ~ 'x' * 2000000 }}{% endmacro %}",
])
def test_a_bomb_behind_a_branch_the_sample_does_not_take_is_refused_statically(source: str) -> None:
    with pytest.raises(BoundExceeded) as refused:
        check(source, "html", html=True)
    assert "for a sample contact" not in str(refused.value)


@pytest.mark.parametrize(("source", "bound"), [
    ("{% set n = 10 %}{{ n ** (n ** n) }}", "integer power too large"),
    ("{% set n = 10 ** 2000 %}{{ n * n * n }}", "more than 4,300 digits"),
    ("{% set n = 1000 %}{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}", "loops more than"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "string longer than"),
    ("{% set s = 'x' * 900000 %}{{ s + s }}", "string longer than"),
    ("{% set s = 'x' * 900000 %}{{ s.ljust(2000000) }}", "string longer than"),
    ("{% for i in range(100) %}{{ 'x' * 10000 }}{% endfor %}", "renders more than 262,144 characters"),
    ("{% set n = 20000 %}{{ range(n) | list }}", "range longer than 10,000"),
])
def test_bombs_computed_at_render_are_stopped_by_the_sandbox(source: str, bound: str) -> None:
    with pytest.raises(BoundExceeded, match=bound) as refused:
        check(source, "body")
    assert str(refused.value).endswith("for a sample contact.")


def test_a_contacts_data_cannot_make_an_innocent_template_explode() -> None:
    template = "Hi{% for i in range(contact.repeat | default(1)) %}!{% endfor %}"
    check(template, "body")
    assert render(template, contact_context({"traits": {"repeat": 3}}, {})) == "Hi!!!"
    with pytest.raises(BoundExceeded, match="range longer than 10,000"):
        render(template, contact_context({"traits": {"repeat": 10**9}}, {}))


def test_ordinary_arithmetic_loops_and_concatenation_still_work() -> None:
    source = ("{{ 2**10 }} {{ 10**4299 > 0 }} {{ [1, 2] * 3 }} {{ 'ab' * 3 }} {{ 'a' ~ 'b' }} {{ '%05d' % 42 }} "
              "{% for x in [1, 2, 3] %}{{ loop.index }}/{{ loop.length }} {% endfor %}")
    check(source, "body")
    assert render(source, {}) == "1024 True [1, 2, 1, 2, 1, 2] ababab ab 00042 1/3 2/3 3/3 "


def test_output_up_to_the_bound_renders() -> None:
    assert len(render("{{ 'x' * n }}", {"n": MAX_OUTPUT_CHARS})) == MAX_OUTPUT_CHARS
    with pytest.raises(BoundExceeded, match="renders more than"):
        render("{{ 'x' * n }}!", {"n": MAX_OUTPUT_CHARS})


@given(st.integers(-(10**6), 10**6), st.integers(0, 30_000))
def test_a_power_is_refused_exactly_when_its_result_passes_the_integer_bound(base: int, exponent: int) -> None:
    try:
        value = int(render("{{ b ** e }}", {"b": base, "e": exponent}))
    except BoundExceeded:
        assert exponent * math.log10(abs(base)) > MAX_INT_DIGITS
    else:
        assert len(str(abs(value))) <= MAX_INT_DIGITS + 1

"""Sandboxed marketer templates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import TemplateProblem
from domain.templates import check, contact_context, render


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

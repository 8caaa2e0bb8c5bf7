"""Send content templates: which fields are templates, how rendered parts go back in place, what a template sees,
and the save-time check (the campaigns' sandbox, but a template reading the triggering event is no refusal)."""

from __future__ import annotations

import pytest

from domain import templates
from domain.errors import TemplateProblem
from domain.journeys import content
from store.journeys import templating

CONTENT = {"email": {"subject": "Hi {{ contact.first_name }}", "text": "t", "html": "<b>{{ event.event }}</b>"},
           "wechat": {"template_id": "T1", "fields": {"first": "{{ event.properties.item }}"}},
           "push": {"title": "T", "body": "B", "data": {"deep": "{{ not_a_template }}"}}}


def test_the_text_fields_are_templates_and_the_settings_are_not() -> None:
    found = [(ch, path, html) for ch, path, _, html in content.parts(CONTENT)]
    assert found == [("email", ("subject",), False), ("email", ("text",), False), ("email", ("html",), True),
                     ("wechat", ("fields", "first"), False), ("push", ("title",), False), ("push", ("body",), False)]


def test_rendered_parts_go_back_in_place_and_the_original_is_untouched() -> None:
    variables = templating.context({"id": 7, "email": "a@x.io", "traits": {"first_name": "Ada"}},
                                {"event": "cart_updated", "properties": {"item": "<shoes>"}}, journey_id=3)
    rendered = [(p, templating.render(p[2], variables, p[3])) for p in content.parts(CONTENT)]
    out = content.fill(CONTENT, rendered)
    assert out["email"] == {"subject": "Hi Ada", "text": "t", "html": "<b>cart_updated</b>"}
    assert out["wechat"] == {"template_id": "T1", "fields": {"first": "<shoes>"}}
    assert out["push"]["data"] == {"deep": "{{ not_a_template }}"}
    assert CONTENT["wechat"]["fields"]["first"] == "{{ event.properties.item }}"
    assert templating.render("{{ event.properties.item }}", variables, html=True) == "&lt;shoes&gt;"
    assert variables["journey"] == {"id": 3}


def test_a_render_past_a_bound_fails() -> None:
    variables = templating.context({"id": 1}, {"event": "e", "properties": {"n": 10_000_000}}, journey_id=1)
    with pytest.raises(templates.BoundExceeded):
        templating.render("{{ 'x' * event.properties.n }}", variables)


@pytest.mark.parametrize("source", ["{{ event.properties.total * 2 }}", "{% if event.properties.vip %}VIP{% endif %}",
                                    "Hi {{ contact.first_name }}"])
def test_the_check_accepts_templates_over_the_event(source: str) -> None:
    templating.check(source, "node 'n': content.email.text")


@pytest.mark.parametrize(("source", "words"), [
    ("{{ x ", "syntax error"), ("{{ contact.__class__ }}", "tries to access"), ("{{ 'x' * 10**7 }}", ""),
    ("{{ contact.first_name | no_such_filter }}", "")])
def test_the_check_refuses_what_campaigns_refuse_naming_the_field(source: str, words: str) -> None:
    with pytest.raises(TemplateProblem) as raised:
        templating.check(source, "node 'n': content.sms.text")
    assert str(raised.value).startswith("node 'n': content.sms.text") and words in str(raised.value)
    assert raised.value.__cause__ is None

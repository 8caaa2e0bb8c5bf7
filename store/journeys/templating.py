"""Journey send templates: what a template sees, its render and its save-time check — `domain.templates` (the
bounded sandbox campaigns use) over the parts `domain.journeys.content` picks. `render` and `check` are module-level
so the confined worker processes (core/confinement.py) can run them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2.exceptions import UndefinedError

from domain import templates
from domain.errors import TemplateProblem


def context(contact: Mapping[str, Any], event: Mapping[str, Any], journey_id: int) -> dict[str, Any]:
    """What a journey template sees: the contact as campaigns show it, the triggering event, the journey."""
    return {"contact": templates.contact_context(dict(contact), {})["contact"],
            "event": {"event": event.get("event"), "properties": dict(event.get("properties") or {})},
            "journey": {"id": journey_id}}


def render(source: str, variables: dict[str, Any], html: bool = False) -> str:
    return templates.render(source, variables, html)


def check(source: str, field: str, html: bool = False) -> None:
    """`templates.check` (syntax, nothing private, constants within the bounds, a sample contact rendered within
    the bounds), except that a value the sample lacks is no refusal: the sample has no triggering event, and a
    template reading `event.properties.total` is right. Such a template is rendered for real at send, where a
    failure fails that contact's send alone. Raises TemplateProblem naming `field`, without chained causes (the
    confined worker sends it back pickled)."""
    try:
        templates.check(source, field, html)
    except templates.BoundExceeded as exc:
        raise templates.BoundExceeded(str(exc)) from None
    except TemplateProblem as exc:
        render_error = exc.__cause__
        if isinstance(render_error, TemplateProblem) and isinstance(render_error.__cause__, UndefinedError):
            return
        raise TemplateProblem(str(exc)) from None

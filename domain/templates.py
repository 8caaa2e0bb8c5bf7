"""Marketer templates: Jinja2 in a sandbox, validated before they are saved.

The sandbox blocks attribute access to Python internals (`__class__`, `__mro__`, ...), and rendering
is bounded, so a template can read the contact and the campaign but never the server.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from domain.errors import TemplateProblem

MAX_TEMPLATE_CHARS = 100_000

_env = SandboxedEnvironment(autoescape=False, undefined=Undefined, keep_trailing_newline=True)
_html_env = SandboxedEnvironment(autoescape=True, undefined=Undefined, keep_trailing_newline=True)


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool) -> Any:
    return (_html_env if html else _env).from_string(source)


def check(source: str, field: str, html: bool = False) -> None:
    """Raise TemplateProblem if the template cannot compile or reaches for what it must not."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(f"{field} is longer than {MAX_TEMPLATE_CHARS} characters.")
    try:
        template = _compile(source, html)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{field} has a syntax error on line {exc.lineno}: {exc.message}") from exc
    _refuse_private_attributes(source, field, html)
    try:
        template.render(SAMPLE_CONTEXT)
    except SecurityError as exc:
        raise TemplateProblem(f"{field} tries to access something templates may not use: {exc}") from exc
    except TemplateError as exc:
        raise TemplateProblem(f"{field} failed to render with a sample contact: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a marketer's template must never crash the server
        raise TemplateProblem(f"{field} failed to render with a sample contact: {exc}") from exc


def _refuse_private_attributes(source: str, field: str, html: bool) -> None:
    """Reject `x.__class__`-style access up front: the sandbox would only render it as empty."""
    tree = (_html_env if html else _env).parse(source)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateProblem(f"{field} tries to access something templates may not use: {name!r}")


def render(source: str, context: dict[str, Any], html: bool = False) -> str:
    try:
        return str(_compile(source, html).render(context))
    except SecurityError as exc:
        raise TemplateProblem(f"template tries to access something templates may not use: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise TemplateProblem(f"template failed to render: {exc}") from exc


SAMPLE_CONTEXT: dict[str, Any] = {
    "contact": {"id": 1, "user_id": "u-1", "email": "ada@example.com", "phone": "+15550100",
                "timezone": "Europe/London", "traits": {"first_name": "Ada", "plan": "pro"}},
    "campaign": {"id": 1, "name": "Sample"},
}


def contact_context(contact: dict[str, Any], campaign: dict[str, Any]) -> dict[str, Any]:
    traits = contact.get("traits") or {}
    return {"contact": {**contact, **{k: v for k, v in traits.items() if k not in contact}}, "campaign": campaign}

"""Personalised send content: a send node's per-channel text fields are sandboxed Jinja2 templates
(`domain.templates`, the bounded sandbox campaigns use) over the `contact` (its columns and traits, traits also
reachable directly as `contact.first_name`), the triggering `event` ({event, properties}) and the `journey` ({id}).

Templated fields: `subject`, `text`, `html` (auto-escaped), `title`, `body` of each channel's content, and every
value of a `fields` object (WeChat template fields). Everything else (template ids, links, push data) is sent as
written. Rendering and the save-time check are `store/journeys/templating.py` (domain packages are independent of
`domain.templates`; they run in the confined worker processes of core/confinement.py, as campaigns' do).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

TEMPLATED = ("subject", "text", "html", "title", "body")

# (channel, path inside the channel's content, template source, html)
Part = tuple[str, tuple[str, ...], str, bool]


def parts(content: Mapping[str, Mapping[str, Any]]) -> list[Part]:
    """The templates of one send node's content, in a stable order."""
    out: list[Part] = []
    for channel, message in content.items():
        if not isinstance(message, Mapping):
            continue
        for name in TEMPLATED:
            source = message.get(name)
            if isinstance(source, str) and source:
                out.append((channel, (name,), source, name == "html"))
        fields = message.get("fields")
        if isinstance(fields, Mapping):
            for name, source in fields.items():
                if isinstance(source, str) and source:
                    out.append((channel, ("fields", str(name)), source, False))
    return out


def field_name(node_id: str, part: Part) -> str:
    """How a problem names the part: `node 'email': content.email.subject`."""
    return f"node {node_id!r}: content.{part[0]}.{'.'.join(part[1])}"


def fill(content: Mapping[str, Mapping[str, Any]], rendered: list[tuple[Part, str]]) -> dict[str, dict[str, Any]]:
    """The content with each rendered part in its template's place; the rest as written."""
    out: dict[str, dict[str, Any]] = {ch: copy.deepcopy(dict(m)) for ch, m in content.items()}
    for (channel, path, _, _), value in rendered:
        node = out[channel]
        for name in path[:-1]:
            node = node[name]
        node[path[-1]] = value
    return out

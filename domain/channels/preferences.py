"""Subscription preferences: per contact, rules over topics × channels. The most specific rule wins: (topic,
channel) over (topic, any channel) over (any topic, channel) over (any, any); no rule means subscribed.
Transactional messages (a receipt, a password reset) ignore preferences; suppressions still apply to them."""

from __future__ import annotations

from collections.abc import Mapping

ANY = "*"

Rules = Mapping[tuple[str, str], bool]  # (topic or *, channel or *) → subscribed


def subscribed(rules: Rules, topic: str | None, channel: str, *, transactional: bool = False) -> bool:
    if transactional:
        return True
    t = topic or ANY
    for key in ((t, channel), (t, ANY), (ANY, channel), (ANY, ANY)):
        if key in rules:
            return rules[key]
    return True

"""What a contact is told about a reward (seed 000: 弹窗/Toast): a toast when an automatic reward is credited, a
popup while a manual one waits to be claimed. One notice per grant, keyed `notify:{grant reference}`, so however
often a step is retried the contact gets it once; the task's `notify` chain says which channels carry it
(`["inbox"]` by default, `["push", "inbox"]` for a push that falls back to the in-app inbox, `[]` for none)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CHANNELS = ("inbox", "email", "sms", "push", "wechat", "webhook")
DEFAULT_CHAIN = ("inbox",)


def check_chain(chain: Sequence[str]) -> tuple[str, ...]:
    """A task's notification chain: known channels, each once; ValueError naming the first bad one."""
    out: list[str] = []
    for name in chain:
        if name not in CHANNELS:
            raise ValueError(f"unknown channel {name!r}; one of {', '.join(CHANNELS)}")
        if name in out:
            raise ValueError(f"channel {name!r} appears twice")
        out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class Notice:
    key: str                 # notify:{reference}: the inbox message's and the delivery's idempotency key
    contact_id: int
    chain: tuple[str, ...]
    title: str
    body: str
    display: str             # toast (credited) | popup (claimable)
    data: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None

    def content(self) -> dict[str, Any]:
        """The rendered message every channel of the chain takes (subject, text, structured data)."""
        data = {**self.data, "display": self.display}
        if self.expires_at is not None:
            data["expires_at"] = self.expires_at.isoformat()
        return {"subject": self.title, "text": self.body, "data": data}


def notice_key(reference: str) -> str:
    return f"notify:{reference}"


def reward_notice(*, reference: str, contact_id: int, task_id: int, task_name: str, amount: int, unit: str,
                  claimable: bool, claim_deadline: datetime | None, chain: Sequence[str],
                  coupon: str | None = None, codes: Sequence[str] = ()) -> Notice:
    """A toast (credited) or a popup (claimable). A coupon reward names the coupon (`coupon`: the template's
    name) and, once issued, its codes (`codes`, as displayed)."""
    data: dict[str, Any] = {"kind": "task_reward", "task_id": task_id, "reference": reference, "amount": amount}
    if coupon is not None:
        what = f"a coupon: {coupon}" if amount == 1 else f"{amount} coupons: {coupon}"
        data |= {"reward_type": "coupon", "coupon": coupon, "codes": list(codes)}
        if claimable:
            until = f" before {claim_deadline:%Y-%m-%d %H:%M} UTC" if claim_deadline else ""
            return Notice(notice_key(reference), contact_id, tuple(chain), f"Claim {what}",
                          f"{task_name}: claim your reward{until}.", "popup", data | {"claimable": True},
                          claim_deadline)
        body = f"{task_name}: your code{'s' if len(codes) > 1 else ''} {', '.join(codes)}." if codes else \
            f"{task_name}: in your coupons."
        return Notice(notice_key(reference), contact_id, tuple(chain), f"You got {what}", body, "toast", data)
    if claimable:
        until = f" before {claim_deadline:%Y-%m-%d %H:%M} UTC" if claim_deadline else ""
        return Notice(notice_key(reference), contact_id, tuple(chain), f"{amount} {unit} to claim",
                      f"{task_name}: claim your reward{until}.", "popup", data | {"claimable": True},
                      claim_deadline)
    return Notice(notice_key(reference), contact_id, tuple(chain), f"You earned {amount} {unit}",
                  f"{task_name}: credited to your account.", "toast", data)

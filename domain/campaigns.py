"""Campaign rules: the lifecycle with its approval policy, variant and holdout assignment, and the delivery key that
makes every send exactly-once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import Conflict, DomainError, InvalidTransition


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


S = CampaignStatus
# draft → pending_approval → approved → scheduled → running ⇄ paused → completed | cancelled. A draft may go straight
# to running only when the policy needs no approval (`launch_target`); a rejected submission returns to draft. A
# recurring campaign goes back to scheduled after each occurrence's run and may be paused while it waits
# (`steer_target`, `after_run`).
_ALLOWED: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    S.DRAFT: frozenset({S.PENDING_APPROVAL, S.APPROVED, S.SCHEDULED, S.RUNNING, S.CANCELLED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.DRAFT, S.CANCELLED}),
    S.APPROVED: frozenset({S.SCHEDULED, S.RUNNING, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.RUNNING, S.PAUSED, S.CANCELLED}),
    S.RUNNING: frozenset({S.PAUSED, S.SCHEDULED, S.COMPLETED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING, S.SCHEDULED, S.COMPLETED, S.CANCELLED}),  # completed: its last batch was in flight
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL = frozenset({S.COMPLETED, S.CANCELLED})


def allowed(current: CampaignStatus) -> frozenset[CampaignStatus]:
    return _ALLOWED[current]


def transition(current: CampaignStatus, target: CampaignStatus) -> CampaignStatus:
    """The new status, or InvalidTransition naming what is allowed from here."""
    if target not in _ALLOWED[current]:
        allowed_here = ", ".join(sorted(_ALLOWED[current])) or "nothing (it is final)"
        raise InvalidTransition(f"A {current} campaign cannot become {target}; allowed from {current}: "
                                f"{allowed_here}.")
    return target


@dataclass(frozen=True)
class ApprovalPolicy:
    """When a campaign needs a second person's approval before it is launched. `audience_over`: more recipients
    than this (None: size never requires it); `incentive`: any incentive attached; `always`: every campaign."""

    always: bool = False
    audience_over: int | None = None
    incentive: bool = True

    @staticmethod
    def parse(text: str) -> ApprovalPolicy:
        """`never`, `always`, or a comma list of `audience>N` and `incentive` (e.g. `audience>10000,incentive`)."""
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if parts in ([], ["never"]):
            return ApprovalPolicy(incentive=False)
        if parts == ["always"]:
            return ApprovalPolicy(always=True)
        over: int | None = None
        incentive = False
        for part in parts:
            if part == "incentive":
                incentive = True
            elif part.startswith("audience>") and part[len("audience>"):].isdigit():
                over = int(part[len("audience>"):])
            else:
                raise ValueError(f"unknown approval rule {part!r}: use never, always, audience>N or incentive")
        return ApprovalPolicy(audience_over=over, incentive=incentive)


def approval_reasons(policy: ApprovalPolicy, *, audience: int, incentive: bool, requested: bool) -> list[str]:
    """Why this campaign needs approval (empty: it does not). A campaign can ask for approval itself (`requested`)
    but never opt out of the policy."""
    reasons = []
    if policy.always:
        reasons.append("the policy requires approval for every campaign")
    if requested:
        reasons.append("the campaign asks for approval")
    if policy.audience_over is not None and audience > policy.audience_over:
        reasons.append(f"its audience ({audience:,}) is over {policy.audience_over:,}")
    if policy.incentive and incentive:
        reasons.append("it carries an incentive")
    return reasons


def launch_target(current: CampaignStatus, reasons: Sequence[str], *, later: bool = False) -> CampaignStatus:
    """Where a launch moves the campaign: running (scheduled when it starts `later`), or Conflict when an approval
    is required and missing."""
    if current in (S.RUNNING, S.PAUSED):
        raise Conflict(f"The campaign is already {current}; resume or wait for its current run instead.")
    if current is S.SCHEDULED:  # its run is waiting for its time; scheduled → running is that run's move
        raise Conflict("The campaign is already scheduled; cancel it to launch or schedule it again.")
    if reasons and current is not S.APPROVED:
        raise Conflict(f"The campaign needs approval before launch ({'; '.join(reasons)}): submit it, and have "
                       f"a key with the `approve` scope other than its creator's approve it.")
    if later:
        return transition(current, S.SCHEDULED)
    return transition(current, S.RUNNING)


def steer_target(current: CampaignStatus, wanted: CampaignStatus, *, recurring: bool,
                 run_going: bool) -> CampaignStatus:
    """Where pause (`wanted` paused) or resume (`wanted` running) moves the campaign. A recurring campaign pauses
    between occurrences too (its schedule pauses) and resumes to scheduled when no run is going; a campaign
    scheduled for one time is not paused (cancel it instead), and scheduled is never resumed into running."""
    if wanted is S.PAUSED:
        if current is S.SCHEDULED and not recurring:
            raise Conflict("A campaign scheduled for one time cannot be paused; cancel it, or launch it again later.")
        return transition(current, S.PAUSED)
    if current is not S.PAUSED:
        raise InvalidTransition(f"Only a paused campaign can be resumed; this one is {current}.")
    return transition(current, S.RUNNING if run_going or not recurring else S.SCHEDULED)


def after_run(current: CampaignStatus, *, cancelled: bool, recurring: bool,
              more: bool) -> CampaignStatus | None:
    """Where the campaign goes when a run closes (None: it stays). A one-off campaign completes (or is cancelled);
    a recurring one waits for its next occurrence (scheduled, or still paused) and completes after its last."""
    if cancelled:
        return S.CANCELLED if current in (S.RUNNING, S.PAUSED, S.SCHEDULED) else None
    if current not in (S.RUNNING, S.PAUSED):
        return None
    if recurring and more:
        return S.SCHEDULED if current is S.RUNNING else None
    return S.COMPLETED


def check_approver(creator_key_id: int | None, approver_key_id: int) -> None:
    """Four eyes: the key that created a campaign cannot approve it."""
    if creator_key_id is not None and creator_key_id == approver_key_id:
        raise Conflict("A campaign cannot be approved with the key that created it; ask another approver.")


# Variants and holdout. Assignment is a pure function of (campaign, contact): a rerun, a second worker or a replay
# puts each contact in the same group. Buckets are 0..9999 (basis points) so weights and the holdout are exact to
# 0.01 %. store/campaigns/runs.py computes the same bucket in SQL (sha256 is in both), set-based at snapshot.
BUCKETS = 10_000
HOLDOUT = "holdout"


def bucket(campaign_id: int, contact_id: int) -> int:
    digest = hashlib.sha256(f"{campaign_id}:{contact_id}".encode()).hexdigest()
    return int(digest[:15], 16) % BUCKETS


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int  # relative, ≥ 1


def thresholds(variants: Sequence[Variant], holdout_bp: int) -> list[tuple[int, str]]:
    """(exclusive upper bucket, group) in bucket order: the holdout first, then each variant its share of the rest.
    No variants means one group, `a`."""
    if not 0 <= holdout_bp < BUCKETS:
        raise DomainError(f"holdout must be between 0 and {BUCKETS - 1} basis points (under 100 %).")
    groups = list(variants) or [Variant("a", 1)]
    names = [v.name for v in groups]
    if len(set(names)) != len(names) or HOLDOUT in names:
        raise DomainError(f"variant names must be unique and not {HOLDOUT!r}.")
    if any(v.weight < 1 for v in groups):
        raise DomainError("variant weights must be at least 1.")
    out = [(holdout_bp, HOLDOUT)] if holdout_bp else []
    rest, total, acc = BUCKETS - holdout_bp, sum(v.weight for v in groups), 0
    for v in groups:
        acc += v.weight
        out.append((holdout_bp + rest * acc // total, v.name))
    return out


def assign(campaign_id: int, contact_id: int, variants: Sequence[Variant], holdout_bp: int) -> str:
    b = bucket(campaign_id, contact_id)
    return next(name for upper, name in thresholds(variants, holdout_bp) if b < upper)


def lift(treated_rate: float | None, holdout_rate: float | None) -> float | None:
    """Relative lift of the treated conversion rate over the holdout's, or None when it cannot be said."""
    if treated_rate is None or holdout_rate is None or holdout_rate == 0:
        return None
    return (treated_rate - holdout_rate) / holdout_rate


def delivery_key(campaign_id: int, step: str, contact_id: int) -> str:
    """The business key of one message: DB unique key, Message-ID seed and provider idempotency key."""
    return f"delivery:{campaign_id}:{step}:{contact_id}"


def message_id(key: str, domain: str) -> str:
    """An RFC 5322 Message-ID derived from the delivery key, so a resend is recognisably the same message."""
    return "<" + key.replace(":", ".") + "@" + domain + ">"


# Per-channel content. A campaign's templates per channel of its chain; `parts` lists each template with where its
# rendering goes in the delivery service's content (store/channels/records.py:Step), `assemble` builds that.
CHANNELS = ("email", "sms", "push", "wechat", "inbox", "webhook")
Part = tuple[tuple[str, ...], str, bool]  # (path in the step's content, template source, autoescape as HTML)


def parts(channel: str, email: dict[str, str | None], content: dict[str, object]) -> list[Part]:
    """The templates to render for one channel: email from the campaign's (or variant's) subject/body/html, the
    others from `content[channel]`."""
    spec = content.get(channel)
    c: dict[str, object] = spec if isinstance(spec, dict) else {}
    out: list[Part] = []

    def add(path: tuple[str, ...], source: object, html: bool = False) -> None:
        if isinstance(source, str) and source:
            out.append((path, source, html))

    if channel == "email":
        add(("subject",), email.get("subject"))
        add(("text",), email.get("body"))
        add(("html",), email.get("html"), True)
    elif channel in ("sms", "webhook"):
        add(("text",), c.get("text"))
    elif channel in ("push", "inbox"):
        add(("subject",), c.get("title"))
        add(("text",), c.get("body"))
    elif channel == "wechat":
        fields = c.get("fields")
        for name, source in (fields.items() if isinstance(fields, dict) else []):
            add(("data", "fields", str(name)), source)
    return out


def assemble(channel: str, content: dict[str, object],
             rendered: list[tuple[tuple[str, ...], str]]) -> dict[str, object]:
    """The step content for one channel: the static settings (template id, link, display, push data) and the
    rendered parts at their paths."""
    spec = content.get(channel)
    c: dict[str, object] = spec if isinstance(spec, dict) else {}
    out: dict[str, object] = {}
    if channel == "wechat":
        out["data"] = {k: c[k] for k in ("template_id", "url") if c.get(k)} | {"fields": {}}
    elif channel == "inbox":
        out["data"] = {"display": c.get("display") or "banner"}
    elif channel == "push" and isinstance(c.get("data"), dict):
        out["data"] = {"data": c["data"]}
    for path, text in rendered:
        node: dict[str, object] = out
        for key in path[:-1]:
            child = node.setdefault(key, {})
            assert isinstance(child, dict)
            node = child
        node[path[-1]] = text
    return out

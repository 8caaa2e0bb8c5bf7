"""Segment-spec events: parsing and validation, clock-skew correction, and identity resolution rules.

Pure: takes decoded JSON and values, returns values. The store applies a `Resolution` set-based.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from domain.errors import DomainError

MAX_EVENT_BYTES = 32 * 1024      # Segment: 32 KB per call / per event in a batch
MAX_BATCH_BYTES = 500 * 1024     # Segment: 500 KB per batch request
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID = 100
MAX_ID = 200                     # userId, anonymousId, previousId, groupId
TYPES = ("track", "page", "screen", "identify", "group", "alias")
AGGREGATED = {"track", "page", "screen"}


class InvalidEvent(DomainError):
    status = 400
    title = "Invalid event"


class PayloadTooLarge(DomainError):
    status = 413
    title = "Payload too large"


class IdentityKind(StrEnum):
    USER_ID = "user_id"
    ANONYMOUS_ID = "anonymous_id"
    EMAIL = "email"
    PHONE = "phone"
    WECHAT_OPENID = "wechat_openid"
    DEVICE_ID = "device_id"


Key = tuple[str, str]  # (IdentityKind, value)


@dataclass(slots=True)
class Event:
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    traits: dict[str, Any] | None
    timestamp: datetime
    received_at: datetime

    @property
    def primary_key(self) -> Key:
        """The identity an event is attributed by: userId wins over anonymousId (Segment's rule)."""
        if self.user_id is not None:
            return (IdentityKind.USER_ID, self.user_id)
        return (IdentityKind.ANONYMOUS_ID, self.anonymous_id or "")

    def attached_keys(self) -> list[Key]:
        """Identities an event reveals that never decide attribution, only get attached if free."""
        keys: list[Key] = []
        traits = self.traits or {}
        for trait, kind in (("email", IdentityKind.EMAIL), ("phone", IdentityKind.PHONE),
                            ("wechat_openid", IdentityKind.WECHAT_OPENID)):
            value = traits.get(trait)
            if isinstance(value, str) and 0 < len(value) <= MAX_ID:
                keys.append((kind, value.lower() if kind is IdentityKind.EMAIL else value))
        device = self.context.get("device")
        if isinstance(device, dict) and isinstance(device.get("id"), str) and 0 < len(device["id"]) <= MAX_ID:
            keys.append((IdentityKind.DEVICE_ID, device["id"]))
        return keys


def parse_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"`{name}` must be an ISO-8601 string, got {type(value).__name__}.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"`{name}` is not an ISO-8601 timestamp: {value[:40]!r}.") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def corrected_timestamp(timestamp: datetime | None, sent_at: datetime | None, received_at: datetime) -> datetime:
    """Segment's clock-skew correction: timestamp = receivedAt - (sentAt - originalTimestamp).

    The device clock may be wrong, but the gap between when it says the event happened and when it
    says it sent the batch is right; anchor that gap on the server's receive time.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


def _id(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if type(value) is str and 0 < len(value) <= MAX_ID:  # the common case first: this runs twice per event
        return value
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # Segment accepts numeric ids and treats them as strings
    if not isinstance(value, str):
        raise InvalidEvent(f"`{name}` must be a string.")
    if len(value) > MAX_ID:
        raise InvalidEvent(f"`{name}` is longer than {MAX_ID} characters.")
    return value


def _object(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"`{name}` must be a JSON object.")
    return value


def _at(where: str) -> str:
    return f" (event {where})" if where else ""


def parse_event(raw: Any, *, type_: str | None, received_at: datetime, sent_at: datetime | None,
                new_id: Callable[[], str], where: str = "") -> Event:
    """Validate one Segment call; `type_` is fixed by the route (/v1/track) or read from the batch item."""
    if not isinstance(raw, dict):
        raise InvalidEvent(f"Each event must be a JSON object{_at(where)}.")
    kind = type_ or raw.get("type")
    if kind not in TYPES:
        raise InvalidEvent(f"`type` must be one of {', '.join(TYPES)}{_at(where)}; got {kind!r}.")
    try:
        user_id, anonymous_id = _id(raw, "userId"), _id(raw, "anonymousId")
        if user_id is None and anonymous_id is None:
            raise InvalidEvent("Send a `userId` or an `anonymousId` with every event.")
        message_id = raw.get("messageId")
        if message_id is None:
            message_id = new_id()
        elif not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID:
            raise InvalidEvent(f"`messageId` must be a string of 1 to {MAX_MESSAGE_ID} characters.")
        sent = parse_time(raw.get("sentAt"), "sentAt") or sent_at
        when = corrected_timestamp(parse_time(raw.get("timestamp"), "timestamp"), sent, received_at)
        context = _object(raw, "context")
        name: str | None = None
        properties: dict[str, Any] = {}
        traits: dict[str, Any] | None = None
        previous_id: str | None = None
        if kind == "track":
            name = raw.get("event")
            if not isinstance(name, str) or not name:
                raise InvalidEvent("A track call needs an `event` name.")
            properties = _object(raw, "properties")
        elif kind in ("page", "screen"):
            name = raw.get("name") if isinstance(raw.get("name"), str) else None
            properties = _object(raw, "properties")
            if isinstance(raw.get("category"), str):
                properties = {**properties, "category": raw["category"]}
        elif kind == "identify":
            traits = _object(raw, "traits") or _object(context, "traits")
            properties = traits
        elif kind == "group":
            group_id = _id(raw, "groupId")
            if group_id is None:
                raise InvalidEvent("A group call needs a `groupId`.")
            name = group_id
            properties = {"groupId": group_id, "traits": _object(raw, "traits")}
        else:  # alias
            previous_id = _id(raw, "previousId")
            if previous_id is None or user_id is None:
                raise InvalidEvent("An alias call needs both `previousId` and `userId`.")
            properties = {"previousId": previous_id}
    except InvalidEvent as exc:
        raise InvalidEvent(f"{exc}{_at(where)}") from None
    return Event(message_id=message_id, type=kind, event=name, user_id=user_id, anonymous_id=anonymous_id,
                 previous_id=previous_id, properties=properties, context=context, traits=traits,
                 timestamp=when, received_at=received_at)


def parse_batch(body: Any, *, received_at: datetime, new_id: Callable[[], str],
                event_size: Callable[[Any], int] | None = None) -> list[Event]:
    """A /v1/batch body. `event_size` measures an item's encoded size (only needed for large bodies)."""
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise InvalidEvent("A batch body is a JSON object with a `batch` array.")
    items = body["batch"]
    if len(items) > MAX_BATCH_EVENTS:
        raise InvalidEvent(f"A batch holds at most {MAX_BATCH_EVENTS} events; this one has {len(items)}.")
    sent_at = parse_time(body.get("sentAt"), "sentAt")
    context = body.get("context") if isinstance(body.get("context"), dict) else None
    events = []
    for i, item in enumerate(items):
        if event_size is not None and event_size(item) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"Event {i} is larger than {MAX_EVENT_BYTES // 1024} KB; Segment's limit per event.")
        if context and isinstance(item, dict):
            item = {**item, "context": {**context, **(item.get("context") or {})}}
        events.append(parse_event(item, type_=None, received_at=received_at, sent_at=sent_at, new_id=new_id,
                                  where=str(i)))
    return events


# --- identity resolution -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    contact_id: int
    user_id: str | None


@dataclass(slots=True)
class Person:
    """One person seen in a batch: an existing contact (possibly absorbing others) or a new one."""

    contact_id: int | None             # the surviving existing contact; None: create one
    user_id: str | None
    keys: set[Key] = field(default_factory=set)      # resolution identities the person holds now
    merged: list[int] = field(default_factory=list)  # existing contacts folded into contact_id
    gains_user_id: bool = False                      # an existing anonymous contact becomes known


@dataclass(slots=True)
class Resolution:
    persons: list[Person]
    event_person: list[int]            # index into persons, per event

    def new_keys(self, known: Mapping[Key, Owner]) -> list[tuple[int, Key]]:
        return sorted((i, k) for i, p in enumerate(self.persons) for k in p.keys if k not in known)


def needs_resolution(events: Iterable[Event]) -> bool:
    """Whether a batch can change identities or traits; if not, attributing it is a plain lookup."""
    for e in events:
        if e.type in ("identify", "alias") or (e.user_id is not None and e.anonymous_id is not None):
            return True
        # attached_keys only finds something in traits or in context.device: skip building it otherwise
        if (e.traits or "device" in e.context) and e.attached_keys():
            return True
    return False


def event_keys(event: Event, known: Mapping[Key, Owner]) -> list[Key]:
    """The resolution identities of an event, the primary one first."""
    keys = [event.primary_key]
    if event.user_id is not None and event.anonymous_id is not None:
        keys.append((IdentityKind.ANONYMOUS_ID, event.anonymous_id))
    if event.previous_id is not None:
        as_user = (IdentityKind.USER_ID, event.previous_id)
        keys.append(as_user if as_user in known else (IdentityKind.ANONYMOUS_ID, event.previous_id))
    return keys


def keys_of(events: Iterable[Event]) -> set[Key]:
    """Every identity whose owner must be looked up before resolving (previousId under both kinds)."""
    found: set[Key] = set()
    for e in events:
        found.add(e.primary_key)
        if e.anonymous_id is not None:
            found.add((IdentityKind.ANONYMOUS_ID, e.anonymous_id))
        if e.previous_id is not None:
            found.add((IdentityKind.USER_ID, e.previous_id))
            found.add((IdentityKind.ANONYMOUS_ID, e.previous_id))
    return found


def resolve(events: Sequence[Event], known: Mapping[Key, Owner]) -> Resolution:
    """Decide which contact each event belongs to, and which contacts merge.

    Rules: identities seen together in one event (userId with anonymousId; alias previousId with
    userId) belong to one person, so their contacts merge into one. Two different userIds never merge:
    the later link is ignored and the event still goes to its own userId's contact. The surviving
    contact is the one that holds the userId, else the oldest (lowest id).
    """
    if all(e.previous_id is None and (e.user_id is None or e.anonymous_id is None) and e.primary_key in known
           for e in events):
        return _all_known(events, known)
    parent: dict[Any, Any] = {}
    user: dict[Any, str | None] = {}
    contacts: dict[Any, set[int]] = {}

    def find(node: Any) -> Any:
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def add(node: Any, user_id: str | None, contact: int | None) -> None:
        if node not in parent:
            parent[node], user[node], contacts[node] = node, user_id, set()
        if contact is not None:
            contacts[find(node)].add(contact)

    def link(a: Any, b: Any) -> None:
        ra, rb = find(a), find(b)
        if ra == rb or (user[ra] and user[rb] and user[ra] != user[rb]):
            return
        parent[rb] = ra
        user[ra] = user[ra] or user[rb]
        contacts[ra] |= contacts.pop(rb)

    per_event = [event_keys(e, known) for e in events]
    for keys in per_event:
        for key in keys:
            owner = known.get(key)
            from_key = key[1] if key[0] == IdentityKind.USER_ID else None
            add(key, from_key or (owner.user_id if owner else None), owner.contact_id if owner else None)
            if owner is not None:
                add(("#contact", owner.contact_id), owner.user_id, owner.contact_id)
                link(("#contact", owner.contact_id), key)
    for keys in per_event:
        for key in keys[1:]:
            link(keys[0], key)

    persons: list[Person] = []
    index: dict[Any, int] = {}
    for node in parent:
        root = find(node)
        if root not in index:
            ids = contacts[root]
            user_id = user[root]
            held = known.get((IdentityKind.USER_ID, user_id)) if user_id else None
            holder = held.contact_id if held is not None else None
            survivor = holder if holder is not None else (min(ids) if ids else None)
            index[root] = len(persons)
            persons.append(Person(contact_id=survivor, user_id=user_id,
                                  merged=sorted(ids - {survivor}) if survivor is not None else [],
                                  gains_user_id=survivor is not None and holder is None and user_id is not None))
        if node[0] != "#contact":
            persons[index[root]].keys.add(node)
    return Resolution(persons=persons, event_person=[index[find(keys[0])] for keys in per_event])


def _all_known(events: Sequence[Event], known: Mapping[Key, Owner]) -> Resolution:
    """The common case: every event names one identity, already owned; nothing to link or create."""
    persons: list[Person] = []
    index: dict[int, int] = {}
    event_person = []
    for event in events:
        key = event.primary_key
        owner = known[key]
        at = index.get(owner.contact_id)
        if at is None:
            at = index[owner.contact_id] = len(persons)
            persons.append(Person(contact_id=owner.contact_id, user_id=owner.user_id))
        persons[at].keys.add(key)
        event_person.append(at)
    return Resolution(persons=persons, event_person=event_person)


def fold_traits(events: Sequence[Event], event_contact: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Identify traits per contact, later calls overriding earlier ones key by key."""
    folded: dict[int, dict[str, Any]] = {}
    for event, contact in zip(events, event_contact, strict=True):
        if event.traits:
            folded.setdefault(contact, {}).update(event.traits)
    return folded
